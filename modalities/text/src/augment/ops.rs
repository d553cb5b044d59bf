use super::{TextAugmentation, TokenSequence};
use crate::tokenizer::MASK_ID;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use ssl_framework::augmentation::{
    AugmentContext, Augmentation, AugmentationError, check_interval, check_range,
};

/// Replaces each token by `[MASK]` with probability `p` (BERT's masking as a view).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenMask {
    /// Probability of masking each token, in `[0, 1]`.
    pub p: f64,
}

impl Augmentation<TokenSequence> for TokenMask {
    fn name(&self) -> &'static str {
        "TokenMask"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("TokenMask", "p", self.p, 0.0, 1.0)
    }
    fn apply(
        &self,
        mut x: TokenSequence,
        ctx: &mut AugmentContext<'_, TokenSequence>,
    ) -> TokenSequence {
        for id in &mut x.ids {
            if ctx.rng.random::<f64>() < self.p {
                *id = MASK_ID;
            }
        }
        x
    }
}

#[typetag::serde(name = "TokenMask")]
impl TextAugmentation for TokenMask {}

/// Deletes each token with probability `p` (EDA's random deletion, Wei & Zou 2019); when every
/// token would go, one of them, chosen at random, is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomDeletion {
    /// Probability of deleting each token, in `[0, 1)`.
    pub p: f64,
}

impl Augmentation<TokenSequence> for RandomDeletion {
    fn name(&self) -> &'static str {
        "RandomDeletion"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("RandomDeletion", "p", self.p, 0.0, 0.99)
    }
    fn apply(
        &self,
        mut x: TokenSequence,
        ctx: &mut AugmentContext<'_, TokenSequence>,
    ) -> TokenSequence {
        let keep: Vec<bool> = x
            .ids
            .iter()
            .map(|_| ctx.rng.random::<f64>() >= self.p)
            .collect();
        if keep.iter().any(|&k| k) {
            let mut i = 0;
            x.ids.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        } else if !x.ids.is_empty() {
            let one = x.ids[ctx.rng.random_range(0..x.ids.len())];
            x.ids = vec![one];
        }
        x
    }
}

#[typetag::serde(name = "RandomDeletion")]
impl TextAugmentation for RandomDeletion {}

/// Swaps the tokens of `swaps` random pairs of positions (EDA's random swap).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSwap {
    /// Number of swaps, in `[0, 1000]`.
    pub swaps: usize,
}

impl Augmentation<TokenSequence> for RandomSwap {
    fn name(&self) -> &'static str {
        "RandomSwap"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("RandomSwap", "swaps", self.swaps as f64, 0.0, 1000.0)
    }
    fn apply(
        &self,
        mut x: TokenSequence,
        ctx: &mut AugmentContext<'_, TokenSequence>,
    ) -> TokenSequence {
        let n = x.ids.len();
        if n >= 2 {
            for _ in 0..self.swaps {
                let (a, b) = (ctx.rng.random_range(0..n), ctx.rng.random_range(0..n));
                x.ids.swap(a, b);
            }
        }
        x
    }
}

#[typetag::serde(name = "RandomSwap")]
impl TextAugmentation for RandomSwap {}

/// Keeps a random contiguous span whose length is a uniform fraction in `fraction` of the
/// sequence (rounded, at least one token), at a uniform position.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCrop {
    /// `[min, max]` fraction of the tokens kept, within `(0, 1]`.
    pub fraction: [f64; 2],
}

impl Augmentation<TokenSequence> for SpanCrop {
    fn name(&self) -> &'static str {
        "SpanCrop"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_interval("SpanCrop", "fraction", self.fraction, 1e-3, 1.0)
    }
    fn apply(
        &self,
        mut x: TokenSequence,
        ctx: &mut AugmentContext<'_, TokenSequence>,
    ) -> TokenSequence {
        let n = x.ids.len();
        if n <= 1 {
            return x;
        }
        let f = if self.fraction[1] > self.fraction[0] {
            ctx.rng.random_range(self.fraction[0]..=self.fraction[1])
        } else {
            self.fraction[0]
        };
        let len = ((n as f64 * f).round() as usize).clamp(1, n);
        let start = ctx.rng.random_range(0..=n - len);
        x.ids = x.ids[start..start + len].to_vec();
        x
    }
}

#[typetag::serde(name = "SpanCrop")]
impl TextAugmentation for SpanCrop {}

/// The SimCSE-style view: leaves the tokens alone and has the encoder drop each token
/// embedding element with probability `p` (scaling the rest by `1 / (1 - p)`), drawing a new
/// mask in every forward pass: the online and target networks see the same text through
/// different masks (Gao et al. 2021, Section 3).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderDropout {
    /// Dropout rate, in `[0, 0.9]` (SimCSE: 0.1).
    pub p: f64,
}

impl Augmentation<TokenSequence> for EncoderDropout {
    fn name(&self) -> &'static str {
        "EncoderDropout"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("EncoderDropout", "p", self.p, 0.0, 0.9)
    }
    fn apply(
        &self,
        mut x: TokenSequence,
        _: &mut AugmentContext<'_, TokenSequence>,
    ) -> TokenSequence {
        x.dropout = self.p as f32;
        x
    }
}

#[typetag::serde(name = "EncoderDropout")]
impl TextAugmentation for EncoderDropout {}
