//! Mutation fuzzing of the audio reader (WAV decoding, mixdown, resampling and log-mel: the
//! whole path from bytes to a spectrogram) and of the audio config: no input makes them panic,
//! and every error is one line naming the file. Seeds are valid WAV files made here.

use ssl_audio::dataset::clip_spectrogram;
use ssl_audio::melspec::{LogMel, LogMelConfig};
use ssl_test_support::fuzz::{fuzz, iterations};
use std::path::Path;

fn wav(channels: u16, bits: u16, float: bool, rate: u32, frames: usize) -> Vec<u8> {
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
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for i in 0..frames * channels as usize {
        let v = (i as f32 * 0.05).sin() * 0.5;
        if float {
            w.write_sample(v).unwrap();
        } else {
            let max = ((1i64 << (bits - 1)) - 1) as f32;
            w.write_sample((v * max) as i32).unwrap();
        }
    }
    w.finalize().unwrap();
    cursor.into_inner()
}

#[test]
fn fuzz_wav_to_log_mel() {
    let front = LogMel::new(LogMelConfig::default());
    let seeds = vec![
        wav(1, 16, false, 8000, 800),
        wav(2, 24, false, 16000, 1200),
        wav(1, 32, true, 22050, 900),
        wav(3, 8, false, 44100, 700),
    ];
    let path = Path::new("fuzz.wav");
    fuzz("wav", "fuzz.wav", &seeds, iterations(2500), |b| {
        clip_spectrogram(path, b, &front).and_then(|s| {
            if s.data.iter().all(|v| v.is_finite()) {
                Ok(s)
            } else {
                Err(ssl_framework::data::DataError::Unusable(
                    "non-finite log-mel values (fuzz.wav)".into(),
                ))
            }
        })
    });
}

#[test]
fn fuzz_audio_configs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/audio");
    let seeds: Vec<Vec<u8>> = ["fsdd.toml", "byol-a.toml"]
        .iter()
        .map(|f| std::fs::read(root.join(f)).unwrap())
        .collect();
    fuzz("audio-config", "", &seeds, iterations(3000), |b| {
        let text = std::str::from_utf8(b).map_err(|e| format!("fuzz.toml: not UTF-8: {e}"))?;
        ssl_framework::config::load_config::<ssl_audio::AudioModality>(text, "fuzz.toml", &[])
            .map_err(|e| e.to_string())
    });
}
