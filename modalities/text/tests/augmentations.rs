//! Text augmentations: behaviour, parameter validation, seeded determinism, and that no view
//! is ever empty.

use rand::SeedableRng;
use rand::rngs::StdRng;
use ssl_framework::augmentation::{AugmentContext, Augmentation};
use ssl_text::augment::*;
use ssl_text::tokenizer::MASK_ID;

fn seq(n: u32) -> TokenSequence {
    TokenSequence {
        ids: (10..10 + n).collect(),
        dropout: 0.0,
    }
}

fn rng(s: u64) -> StdRng {
    StdRng::seed_from_u64(s)
}

/// Every op, with typical parameters.
fn ops() -> Vec<Box<dyn Augmentation<TokenSequence>>> {
    vec![
        Box::new(TokenMask { p: 0.3 }),
        Box::new(RandomDeletion { p: 0.5 }),
        Box::new(RandomSwap { swaps: 3 }),
        Box::new(SpanCrop {
            fraction: [0.2, 0.8],
        }),
        Box::new(EncoderDropout { p: 0.1 }),
    ]
}

#[test]
fn every_op_is_seeded_and_never_returns_an_empty_view() {
    for op in ops() {
        op.validate().unwrap();
        for n in [1, 2, 5, 40] {
            for s in 0..50 {
                let a = op.apply(seq(n), &mut AugmentContext::new(&mut rng(s)));
                let b = op.apply(seq(n), &mut AugmentContext::new(&mut rng(s)));
                assert_eq!(a, b, "{} is not deterministic for a seed", op.name());
                assert!(!a.ids.is_empty(), "{} emptied a {n}-token view", op.name());
                assert!(a.ids.len() <= n as usize);
            }
        }
    }
}

#[test]
fn token_mask_masks_about_p_of_the_tokens() {
    let op = TokenMask { p: 0.25 };
    let y = op.apply(seq(4000), &mut AugmentContext::new(&mut rng(1)));
    let masked = y.ids.iter().filter(|&&i| i == MASK_ID).count();
    assert!((850..1150).contains(&masked), "{masked}");
    for (a, b) in y.ids.iter().zip(seq(4000).ids) {
        assert!(*a == MASK_ID || *a == b, "only masking changes tokens");
    }
    assert_eq!(
        TokenMask { p: 0.0 }.apply(seq(9), &mut AugmentContext::new(&mut rng(0))),
        seq(9)
    );
    assert!(TokenMask { p: 1.5 }.validate().is_err());
    assert!(TokenMask { p: f64::NAN }.validate().is_err());
}

#[test]
fn random_deletion_keeps_order_and_one_token_at_least() {
    let y = RandomDeletion { p: 0.5 }.apply(seq(1000), &mut AugmentContext::new(&mut rng(2)));
    assert!((400..600).contains(&y.ids.len()), "{}", y.ids.len());
    assert!(y.ids.windows(2).all(|w| w[0] < w[1]), "the order is kept");
    // With p near 1, a single random token survives.
    let y = RandomDeletion { p: 0.99 }.apply(seq(3), &mut AugmentContext::new(&mut rng(3)));
    assert!(!y.ids.is_empty());
    assert!(RandomDeletion { p: 1.0 }.validate().is_err());
}

#[test]
fn random_swap_permutes() {
    let y = RandomSwap { swaps: 5 }.apply(seq(20), &mut AugmentContext::new(&mut rng(4)));
    let mut sorted = y.ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, seq(20).ids, "a permutation");
    assert_ne!(y.ids, seq(20).ids);
    assert_eq!(
        RandomSwap { swaps: 0 }.apply(seq(5), &mut AugmentContext::new(&mut rng(0))),
        seq(5)
    );
    assert!(RandomSwap { swaps: 5000 }.validate().is_err());
}

#[test]
fn span_crop_keeps_a_contiguous_span_of_the_asked_fraction() {
    let op = SpanCrop {
        fraction: [0.5, 0.5],
    };
    for s in 0..20 {
        let y = op.apply(seq(20), &mut AugmentContext::new(&mut rng(s)));
        assert_eq!(y.ids.len(), 10);
        assert!(y.ids.windows(2).all(|w| w[1] == w[0] + 1), "contiguous");
    }
    assert!(
        SpanCrop {
            fraction: [0.8, 0.2]
        }
        .validate()
        .is_err()
    );
    assert!(
        SpanCrop {
            fraction: [0.0, 0.5]
        }
        .validate()
        .is_err()
    );
}

#[test]
fn encoder_dropout_sets_the_rate_and_keeps_the_tokens() {
    let y = EncoderDropout { p: 0.2 }.apply(seq(7), &mut AugmentContext::new(&mut rng(0)));
    assert_eq!(y.ids, seq(7).ids);
    assert!((y.dropout - 0.2).abs() < 1e-6);
    assert!(EncoderDropout { p: 0.95 }.validate().is_err());
}
