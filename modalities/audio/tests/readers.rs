//! WAV reading (every supported sample format, multi-channel mixdown), corrupt files, and the
//! FSDD dataset on the real recordings.

use ssl_audio::dataset::{self, Layout, parse_fsdd_name};
use ssl_audio::melspec::{LogMel, LogMelConfig};
use ssl_audio::wav::read_wav;
use std::path::Path;

fn write_wav(path: &Path, channels: u16, bits: u16, float: bool, frames: &[Vec<f32>], rate: u32) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for frame in frames {
        for &v in frame {
            if float {
                w.write_sample(v).unwrap();
            } else {
                let max = ((1i64 << (bits - 1)) - 1) as f32;
                w.write_sample((v * max).round() as i32).unwrap();
            }
        }
    }
    w.finalize().unwrap();
}

#[test]
fn every_sample_format_reads_and_mixes_down() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<Vec<f32>> = (0..100)
        .map(|i| vec![0.5 * ((i as f32) / 50.0 - 1.0), -0.25])
        .collect();
    for (bits, float) in [
        (8, false),
        (16, false),
        (24, false),
        (32, false),
        (32, true),
    ] {
        let p = dir.path().join(format!("s{bits}{float}.wav"));
        write_wav(&p, 2, bits, float, &frames, 8000);
        let w = read_wav(&p).unwrap();
        assert_eq!((w.samples.len(), w.sample_rate), (100, 8000));
        let tol = if bits == 8 { 2e-2 } else { 1e-4 };
        for (s, f) in w.samples.iter().zip(&frames) {
            assert!(
                (s - (f[0] + f[1]) / 2.0).abs() < tol,
                "{bits} bits float={float}: {s} vs {}",
                (f[0] + f[1]) / 2.0
            );
        }
    }
}

#[test]
fn corrupt_files_fail_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let garbage = dir.path().join("garbage.wav");
    std::fs::write(&garbage, b"RIFF....WAVEfmt nonsense").unwrap();
    let good = dir.path().join("good.wav");
    write_wav(
        &good,
        1,
        16,
        false,
        &(0..1000)
            .map(|i| vec![(i as f32 / 100.0).sin()])
            .collect::<Vec<_>>(),
        8000,
    );
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.wav");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2 + 1]).unwrap();
    let no_samples = dir.path().join("nosamples.wav");
    write_wav(&no_samples, 1, 16, false, &[], 8000);
    for p in [&empty, &garbage, &truncated, &no_samples] {
        let e = read_wav(p).unwrap_err().to_string();
        assert!(e.contains(p.file_name().unwrap().to_str().unwrap()), "{e}");
    }
    assert!(read_wav(&dir.path().join("missing.wav")).is_err());
}

#[test]
fn fsdd_names_parse() {
    assert_eq!(
        parse_fsdd_name(Path::new("7_theo_12.wav")),
        Some((7, "theo".into(), 12))
    );
    assert_eq!(parse_fsdd_name(Path::new("x_theo_12.wav")), None);
    assert_eq!(parse_fsdd_name(Path::new("7_theo.wav")), None);
    assert_eq!(parse_fsdd_name(Path::new("7_theo_1_2.wav")), None);
}

#[test]
fn fsdd_official_split_and_label_sets_on_real_recordings() {
    let Some(root) = ssl_test_support::unpack_all(
        "fsdd_official_split_and_label_sets_on_real_recordings",
        "fsdd-recordings.tar.gz",
    ) else {
        return;
    };
    // A slice: 2 digits x all speakers, plus corrupt files that must be skipped and counted.
    let slice = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(root.join("recordings")).unwrap() {
        let p = e.unwrap().path();
        if let Some((d, _, _)) = parse_fsdd_name(&p)
            && d < 2
        {
            std::fs::copy(&p, slice.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(slice.path().join("3_nobody_40.wav"), b"not audio").unwrap();
    std::fs::write(slice.path().join("3_nobody_1.wav"), b"").unwrap();
    let front = LogMel::new(LogMelConfig::default());
    let d = dataset::load(slice.path(), Layout::Auto, &front).unwrap();
    assert_eq!(d.skipped, 2);
    assert_eq!(
        d.test.len(),
        2 * 6 * 5,
        "index 0-4 of each digit and speaker is the test set"
    );
    assert_eq!(d.train.len(), 2 * 6 * 45);
    let names: Vec<&str> = d.train.label_sets.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["digit", "speaker"]);
    assert_eq!(
        d.train.label_sets[1].classes.len(),
        7,
        "6 speakers + the corrupt files' name"
    );
    assert!(
        d.train
            .items
            .iter()
            .all(|s| s.n_mels == 64 && s.frames >= 10)
    );
    // 8 kHz recordings are resampled to 16 kHz: 1 + 2 n / 160 frames for n samples at 8 kHz.
    let w = read_wav(&slice.path().join("0_jackson_0.wav")).unwrap();
    assert_eq!(w.sample_rate, 8000);
    let expect = 1 + 2 * w.samples.len() / 160;
    let one = dataset::load_spectrograms(&[slice.path().join("0_jackson_0.wav")], &front)
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(one.frames, expect);
    assert!(
        d.test.items.iter().any(|s| s == &one),
        "0_jackson_0 (index 0) is in the test split"
    );
    let e = dataset::load(&slice.path().join("nothing"), Layout::Auto, &front)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing"), "{e}");
}
