//! The BYOL-A encoder pools over a clip's own frames: a clip's representation does not depend
//! on the other clips of its batch (batch padding is left out of the mean and the max).

use burn::prelude::*;
use ssl_audio::melspec::Spectrogram;
use ssl_audio::{AudioDataConfig, AudioEncoderConfig, AudioModality};
use ssl_framework::{Encoder, Modality};

fn clip(frames: usize, seed: usize) -> Spectrogram {
    Spectrogram {
        n_mels: 64,
        frames,
        data: (0..64 * frames)
            .map(|i| (((i * 31 + seed * 7) % 23) as f32 - 11.0) / 6.0)
            .collect(),
    }
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [n, d] = t.dims();
    let v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    (0..n).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
}

#[test]
fn a_clip_pools_the_same_alone_or_beside_a_longer_one() {
    let device = Device::flex();
    device.seed(0);
    let m = AudioModality::default();
    let cfg = AudioEncoderConfig {
        channels: 8,
        dim: 32,
        ..Default::default()
    };
    let enc = m
        .init_encoder(&cfg, &AudioDataConfig::default(), &device)
        .unwrap();
    let short = clip(100, 1);
    let alone = rows(enc.forward(m.to_input(m.collate(vec![short.clone()]), &device)));
    let batch = m.to_input(m.collate(vec![short, clip(240, 2)]), &device);
    let beside = rows(enc.forward(batch.clone()));
    let relative = |a: &[f32], b: &[f32]| {
        let d: f32 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f32>()
            .sqrt();
        d / a.iter().map(|x| x * x).sum::<f32>().sqrt()
    };
    // Only the convolutions' view past the clip's last frames differs (a few steps at the edge).
    let masked = relative(&alone[0], &beside[0]);
    // Pooling over the padding too (every step counted valid), as before the mask.
    let unmasked = rows(enc.forward(ssl_audio::encoder::AudioInput {
        valid: batch.valid.ones_like(),
        ..batch
    }));
    let naive = relative(&alone[0], &unmasked[0]);
    eprintln!("relative change: masked {masked}, unmasked {naive}");
    assert!(
        masked < 0.05,
        "batch padding changed the clip's features by {masked}"
    );
    assert!(naive > 4.0 * masked, "{naive} vs {masked}");
    assert_ne!(beside[0], beside[1]);
}
