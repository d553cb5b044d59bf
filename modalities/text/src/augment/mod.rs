//! Text augmentations on token sequences: random token masking, random deletion, random swap,
//! random span cropping (a contiguous sub-span), and encoder dropout, the SimCSE-style view
//! (Gao et al. 2021): the same tokens, a different dropout mask on the token embeddings in
//! every forward pass. Written in configs as `{ type = "Name", ... }`; `RandomApply` and
//! `OneOf` combine them. No op ever returns an empty sequence.

mod ops;
pub mod search;

pub use ops::{EncoderDropout, RandomDeletion, RandomSwap, SpanCrop, TokenMask};

use ssl_framework::Augmentation;

/// A tokenized text as augmentations see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSequence {
    /// Token ids (never empty; see [`crate::tokenizer`] for the special ids).
    pub ids: Vec<u32>,
    /// Dropout rate in `[0, 1)` the encoder applies to this sequence's token embeddings
    /// (set by [`EncoderDropout`]; 0 leaves them as they are).
    pub dropout: f32,
}

/// The typetag-serializable text augmentation trait: every op usable in a text config.
#[typetag::serde(tag = "type")]
pub trait TextAugmentation: Augmentation<TokenSequence> {}

ssl_framework::register_combinators!(TextAugmentation);

/// A boxed op, as in [`ssl_framework::config::AugmentConfig`].
pub type TextOp = Box<dyn TextAugmentation>;
