//! The text augmentation search space of `ssl search-augment`: every op's magnitude mapping.

use super::{EncoderDropout, RandomDeletion, RandomSwap, SpanCrop, TextOp, TokenMask};
use ssl_framework::search_space::{SearchOp, SearchSpace};

/// The space: every view starts with a `SpanCrop` keeping 60-100% of the tokens; a policy
/// chooses among token-level ops, magnitude `m` in `[0, 1]`:
///
/// | op | magnitude `m` sets |
/// |---|---|
/// | `TokenMask` | `p = 0.4 m` (fraction of tokens replaced by the mask token) |
/// | `RandomDeletion` | `p = 0.4 m` (fraction of tokens deleted) |
/// | `RandomSwap` | `swaps = round(8 m)` swaps of two random tokens |
/// | `EncoderDropout` | `p = 0.3 m` (embedding dropout, SimCSE: 0.1) |
pub fn search_space() -> SearchSpace<TextOp> {
    fn boxed<T: super::TextAugmentation + 'static>(op: T) -> TextOp {
        Box::new(op)
    }
    SearchSpace {
        crop: vec![boxed(SpanCrop {
            fraction: [0.6, 1.0],
        })],
        finish: vec![],
        ops: vec![
            SearchOp {
                name: "TokenMask",
                magnitude: "p = 0.4 m",
                build: Box::new(move |m| boxed(TokenMask { p: 0.4 * m })),
            },
            SearchOp {
                name: "RandomDeletion",
                magnitude: "p = 0.4 m",
                build: Box::new(move |m| boxed(RandomDeletion { p: 0.4 * m })),
            },
            SearchOp {
                name: "RandomSwap",
                magnitude: "swaps = round(8 m)",
                build: Box::new(move |m| {
                    boxed(RandomSwap {
                        swaps: (8.0 * m).round() as usize,
                    })
                }),
            },
            SearchOp {
                name: "EncoderDropout",
                magnitude: "p = 0.3 m",
                build: Box::new(move |m| boxed(EncoderDropout { p: 0.3 * m })),
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::TokenSequence;

    #[test]
    fn every_op_is_valid_at_every_magnitude() {
        ssl_framework::search_space::check_space::<TokenSequence, _>(&search_space()).unwrap();
    }
}
