//! WAV reading through `hound`: 8/16/24/32-bit integer and 32-bit float PCM, any number of
//! channels (mixed down to mono by averaging), samples scaled to `[-1, 1]`.

use ssl_framework::data::DataError;
use std::path::Path;

/// A mono waveform.
#[derive(Debug, Clone, PartialEq)]
pub struct Waveform {
    /// Samples in `[-1, 1]`.
    pub samples: Vec<f32>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
}

/// Sample rates accepted from a file header, in Hz (telephone 1 kHz to 768 kHz studio audio);
/// anything else is a corrupt header, and would make the resampler's FFT absurdly large.
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

/// The largest magnitude of a float sample (full scale is 1): larger ones, and NaN or infinite
/// ones, mark a corrupt file (found by fuzzing: a 3.3e38 sample overflows the resampler's FFT).
pub const MAX_FLOAT_SAMPLE: f32 = 1e4;

/// Reads a WAV file and mixes it down to mono.
///
/// # Errors
/// [`DataError::Io`] naming the file when it cannot be read; otherwise as [`parse_wav`].
pub fn read_wav(path: &Path) -> Result<Waveform, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_wav(path, &bytes)
}

/// Decodes the bytes of a WAV file (`path` only names it in errors) and mixes it down to mono.
///
/// # Errors
/// [`DataError::Corrupt`] naming `path` when it is not a readable WAV (bad header, truncated
/// data, an unsupported sample format, a sample rate outside [`SAMPLE_RATES`], float samples
/// beyond [`MAX_FLOAT_SAMPLE`] or not finite) or holds no samples.
pub fn parse_wav(path: &Path, bytes: &[u8]) -> Result<Waveform, DataError> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| corrupt(format!("not a readable WAV file: {e}")))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 || !SAMPLE_RATES.contains(&spec.sample_rate) {
        return Err(corrupt(format!(
            "invalid header: {channels} channels at {} Hz (1 or more channels at {}-{} Hz expected)",
            spec.sample_rate,
            SAMPLE_RATES.start(),
            SAMPLE_RATES.end()
        )));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader.samples::<f32>().collect::<Result<_, _>>(),
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
        }
        (format, bits) => {
            return Err(corrupt(format!(
                "unsupported sample format {format:?} with {bits} bits"
            )));
        }
    }
    .map_err(|e| corrupt(format!("truncated or malformed sample data: {e}")))?;
    if interleaved.is_empty() {
        return Err(corrupt("no samples".into()));
    }
    if let Some(i) = interleaved
        .iter()
        .position(|v| !(v.abs() <= MAX_FLOAT_SAMPLE))
    {
        return Err(corrupt(format!(
            "sample {i} is {}: float samples beyond +-{MAX_FLOAT_SAMPLE} (80 dB above full scale) are corrupt",
            interleaved[i]
        )));
    }
    let samples = if channels == 1 {
        interleaved
    } else {
        interleaved
            .chunks(channels)
            .map(|f| f.iter().sum::<f32>() / channels as f32)
            .collect()
    };
    Ok(Waveform {
        samples,
        sample_rate: spec.sample_rate,
    })
}
