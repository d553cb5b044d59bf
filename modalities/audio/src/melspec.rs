//! The log-mel front end of BYOL-A (Niizumi et al. 2021): torchaudio's `MelSpectrogram` with
//! a periodic Hann window, centred frames (reflect padding), power 2, HTK mel scale without
//! filter normalization, then `log(x + eps)`. Matches librosa/torchaudio with the same settings
//! (see `tests/frontend.rs` and `scripts/make_logmel_fixture.py`).

use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `torch.finfo(torch.float32).eps`, BYOL-A's epsilon inside the log.
pub const LOG_EPS: f32 = f32::EPSILON;

/// Front-end settings (BYOL-A defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogMelConfig {
    /// Sample rate in Hz the audio is resampled to.
    pub sample_rate: u32,
    /// FFT size in samples (a window of the same length).
    pub n_fft: usize,
    /// Hop between frames in samples (160 = 10 ms at 16 kHz).
    pub hop_length: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Lowest band edge in Hz.
    pub f_min: f32,
    /// Highest band edge in Hz.
    pub f_max: f32,
}

impl Default for LogMelConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16000,
            n_fft: 1024,
            hop_length: 160,
            n_mels: 64,
            f_min: 60.0,
            f_max: 7800.0,
        }
    }
}

fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// The mel filterbank `[n_mels][n_fft/2 + 1]` (HTK scale, no normalization; torchaudio's
/// `melscale_fbanks(..., norm=None, mel_scale="htk")`).
pub fn mel_filterbank(cfg: &LogMelConfig) -> Vec<Vec<f32>> {
    let n_freqs = cfg.n_fft / 2 + 1;
    let nyquist = cfg.sample_rate as f64 / 2.0;
    let freqs: Vec<f64> = (0..n_freqs)
        .map(|i| nyquist * i as f64 / (n_freqs - 1) as f64)
        .collect();
    let (m_min, m_max) = (hz_to_mel(cfg.f_min as f64), hz_to_mel(cfg.f_max as f64));
    let pts: Vec<f64> = (0..cfg.n_mels + 2)
        .map(|i| mel_to_hz(m_min + (m_max - m_min) * i as f64 / (cfg.n_mels + 1) as f64))
        .collect();
    (0..cfg.n_mels)
        .map(|m| {
            let (lo, center, hi) = (pts[m], pts[m + 1], pts[m + 2]);
            freqs
                .iter()
                .map(|&f| {
                    let down = (f - lo) / (center - lo);
                    let up = (hi - f) / (hi - center);
                    down.min(up).max(0.0) as f32
                })
                .collect()
        })
        .collect()
}

/// A log-mel spectrogram `[n_mels, frames]`, row-major (one row per mel band).
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    /// Mel bands (rows).
    pub n_mels: usize,
    /// Frames (columns), one per hop.
    pub frames: usize,
    /// `n_mels * frames` values.
    pub data: Vec<f32>,
}

impl Spectrogram {
    /// A `n_mels x frames` spectrogram filled with `value`.
    pub fn filled(n_mels: usize, frames: usize, value: f32) -> Self {
        Self {
            n_mels,
            frames,
            data: vec![value; n_mels * frames],
        }
    }
    /// The value at band `m`, frame `t`.
    pub fn at(&self, m: usize, t: usize) -> f32 {
        self.data[m * self.frames + t]
    }
}

/// Computes log-mel spectrograms; holds the FFT plan, the window and the filterbank.
pub struct LogMel {
    cfg: LogMelConfig,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    /// Per band: first frequency bin and its weights.
    bands: Vec<(usize, Vec<f32>)>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel").field("cfg", &self.cfg).finish()
    }
}

impl LogMel {
    /// Plans the transform for `cfg`.
    pub fn new(cfg: LogMelConfig) -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(cfg.n_fft);
        let n = cfg.n_fft;
        let window = (0..n)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) as f32)
            .collect();
        let bands = mel_filterbank(&cfg)
            .into_iter()
            .map(|w| {
                let first = w.iter().position(|v| *v > 0.0).unwrap_or(0);
                let last = w
                    .iter()
                    .rposition(|v| *v > 0.0)
                    .map(|i| i + 1)
                    .unwrap_or(first);
                (first, w[first..last].to_vec())
            })
            .collect();
        Self {
            cfg,
            fft,
            window,
            bands,
        }
    }

    /// The settings.
    pub fn config(&self) -> &LogMelConfig {
        &self.cfg
    }

    /// `log(mel power + eps)` of a mono signal at `cfg.sample_rate`: `[n_mels, 1 + len / hop]`.
    /// Frames are centred (the signal is reflect-padded by `n_fft / 2` on each side; signals
    /// shorter than that are zero-padded first, as reflection needs more samples).
    pub fn compute(&self, signal: &[f32]) -> Spectrogram {
        let (n, hop) = (self.cfg.n_fft, self.cfg.hop_length);
        let pad = n / 2;
        let base: Vec<f32> = if signal.len() > pad {
            signal.to_vec()
        } else {
            let mut s = signal.to_vec();
            s.resize(pad + 1, 0.0);
            s
        };
        let len = base.len();
        let mut padded = Vec::with_capacity(len + 2 * pad);
        padded.extend((1..=pad).rev().map(|i| base[i]));
        padded.extend_from_slice(&base);
        padded.extend((0..pad).map(|i| base[len - 2 - i]));
        let frames = 1 + signal.len() / hop;
        let mut data = vec![0f32; self.cfg.n_mels * frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut power = vec![0f32; n / 2 + 1];
        for t in 0..frames {
            let start = t * hop;
            for (i, v) in input.iter_mut().enumerate() {
                *v = padded.get(start + i).copied().unwrap_or(0.0) * self.window[i];
            }
            self.fft
                .process(&mut input, &mut spectrum)
                .expect("FFT buffers of the planned size");
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.re * c.re + c.im * c.im;
            }
            for (m, (first, w)) in self.bands.iter().enumerate() {
                let e: f32 = w.iter().zip(&power[*first..]).map(|(a, b)| a * b).sum();
                data[m * frames + t] = (e + LOG_EPS).ln();
            }
        }
        Spectrogram {
            n_mels: self.cfg.n_mels,
            frames,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filterbank_triangles_peak_at_one_and_cover_the_range() {
        let cfg = LogMelConfig::default();
        let fb = mel_filterbank(&cfg);
        assert_eq!(fb.len(), 64);
        assert_eq!(fb[0].len(), 513);
        for band in &fb {
            let max = band.iter().cloned().fold(0f32, f32::max);
            assert!(max > 0.3 && max <= 1.0);
        }
        // Nothing below f_min or above f_max.
        let hz_per_bin = 8000.0 / 512.0;
        assert!(
            fb.iter()
                .all(|b| b[..(60.0 / hz_per_bin) as usize].iter().all(|v| *v == 0.0))
        );
        assert!(fb.iter().all(|b| {
            b[(7800.0 / hz_per_bin) as usize + 1..]
                .iter()
                .all(|v| *v == 0.0)
        }));
    }

    #[test]
    fn a_tone_lights_the_band_that_contains_it() {
        let lm = LogMel::new(LogMelConfig::default());
        let x: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let s = lm.compute(&x);
        assert_eq!((s.n_mels, s.frames), (64, 101));
        let mid = 50;
        let loudest = (0..64)
            .max_by(|a, b| s.at(*a, mid).total_cmp(&s.at(*b, mid)))
            .unwrap();
        let centre = mel_to_hz(
            hz_to_mel(60.0) + (hz_to_mel(7800.0) - hz_to_mel(60.0)) * (loudest + 1) as f64 / 65.0,
        );
        assert!(
            (centre - 1000.0).abs() < 120.0,
            "band {loudest} centred at {centre} Hz"
        );
        let silence = lm.compute(&[0.0; 1600]);
        assert!(
            silence
                .data
                .iter()
                .all(|v| (*v - LOG_EPS.ln()).abs() < 1e-6)
        );
    }
}
