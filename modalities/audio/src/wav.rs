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

/// Reads a WAV file and mixes it down to mono.
///
/// # Errors
/// [`DataError::Corrupt`] naming the file when it is not a readable WAV (bad header, truncated
/// data, an unsupported sample format) or holds no samples; [`DataError::Io`] when it cannot be
/// opened.
pub fn read_wav(path: &Path) -> Result<Waveform, DataError> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = hound::WavReader::new(std::io::BufReader::new(file))
        .map_err(|e| corrupt(format!("not a readable WAV file: {e}")))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 || spec.sample_rate == 0 {
        return Err(corrupt(format!(
            "invalid header: {channels} channels at {} Hz",
            spec.sample_rate
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
