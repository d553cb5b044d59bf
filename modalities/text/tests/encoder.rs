//! The Transformer encoder: output shape, masked mean pooling (padding changes nothing), and
//! the SimCSE-style embedding dropout (a new mask every forward pass).

use burn::prelude::*;
use ssl_framework::Encoder;
use ssl_framework::modality::Modality;
use ssl_text::augment::TokenSequence;
use ssl_text::encoder::TextEncoder;
use ssl_text::{TextEncoderConfig, TextModality};

fn encoder(device: &Device) -> TextEncoder {
    device.seed(0);
    TextEncoder::new(100, 16, 32, 4, 2, 64, 0.0, device)
}

fn batch(seqs: &[Vec<u32>], dropout: f32) -> ssl_text::TextBatch {
    TextModality::default().collate(
        seqs.iter()
            .map(|ids| TokenSequence {
                ids: ids.clone(),
                dropout,
            })
            .collect(),
    )
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
fn output_shape_and_padding_does_not_change_a_sequence() {
    let device = Device::flex();
    let enc = encoder(&device);
    let m = TextModality::default();
    let short = vec![5, 6, 7];
    let alone = enc.forward(m.to_input(batch(&[short.clone()], 0.0), &device));
    assert_eq!(alone.dims(), [1, 32]);
    // In a batch with a longer sequence, the short one is padded; its output is the same.
    let padded = enc.forward(m.to_input(
        batch(&[short, vec![8, 9, 10, 11, 12, 13, 14]], 0.0),
        &device,
    ));
    let (a, b) = (rows(alone), rows(padded));
    let diff = a[0]
        .iter()
        .zip(&b[0])
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "padding changed the output by {diff}");
    assert_eq!(TextEncoderConfig::default().d_model, 128);
}

#[test]
fn embedding_dropout_draws_a_new_mask_each_pass() {
    let device = Device::flex();
    let enc = encoder(&device);
    let m = TextModality::default();
    let seqs = vec![vec![5, 6, 7, 8, 9], vec![10, 11, 12]];
    let with = m.to_input(batch(&seqs, 0.3), &device);
    assert!(with.dropout.is_some());
    let (a, b) = (rows(enc.forward(with.clone())), rows(enc.forward(with)));
    assert_ne!(a, b, "two passes, two masks");
    let without = m.to_input(batch(&seqs, 0.0), &device);
    assert!(without.dropout.is_none());
    assert_eq!(
        rows(enc.forward(without.clone())),
        rows(enc.forward(without))
    );
}
