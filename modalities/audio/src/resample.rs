//! Sample-rate conversion with rubato's FFT resampler (band-limited, for integer-ratio and
//! general rates alike).

use rubato::{FftFixedInOut, Resampler};

/// Resamples mono `x` from `from` Hz to `to` Hz; the output has `round(len * to / from)`
/// samples, aligned with the input (the resampler's delay is removed).
///
/// # Errors
/// A message when a rate is 0 or the resampler fails.
pub fn resample(x: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to {
        return Ok(x.to_vec());
    }
    if from == 0 || to == 0 {
        return Err(format!("cannot resample from {from} Hz to {to} Hz"));
    }
    let mut r = FftFixedInOut::<f32>::new(from as usize, to as usize, 1024, 1)
        .map_err(|e| e.to_string())?;
    let delay = r.output_delay();
    let expected = ((x.len() as f64) * to as f64 / from as f64).round() as usize;
    let mut out = Vec::with_capacity(expected + delay + 2 * r.output_frames_next());
    let mut pos = 0;
    while pos + r.input_frames_next() <= x.len() {
        let n = r.input_frames_next();
        let o = r
            .process(&[&x[pos..pos + n]], None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&o[0]);
        pos += n;
    }
    if pos < x.len() {
        let o = r
            .process_partial(Some(&[&x[pos..]]), None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&o[0]);
    }
    while out.len() < delay + expected {
        let o = r
            .process_partial::<&[f32]>(None, None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&o[0]);
    }
    Ok(out[delay..delay + expected].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_keeps_a_sine_and_its_length() {
        let from = 8000;
        let x: Vec<f32> = (0..8000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / from as f32).sin())
            .collect();
        let y = resample(&x, from, 16000).unwrap();
        assert_eq!(y.len(), 16000);
        // Away from the edges, the upsampled signal is the same sine at 16 kHz.
        let err = (2000..14000)
            .map(|i| (y[i] - (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin()).abs())
            .fold(0f32, f32::max);
        assert!(err < 0.02, "{err}");
        assert_eq!(resample(&x, 8000, 8000).unwrap(), x);
        assert!(resample(&x, 0, 8000).is_err());
    }
}
