//! The subword vocabulary: a byte-level BPE tokenizer (GPT-2's scheme, Radford et al. 2019,
//! through Hugging Face `tokenizers`) trained on the pre-training texts, or loaded from its JSON.
//! NFKC normalization and optional lowercasing; every byte is in the base alphabet, so any text
//! is encoded without unknown tokens and decodes back exactly.
//!
//! Byte-level BPE rather than WordPiece: `tokenizers`' WordPiece trainer creates its `##`
//! continuation tokens in hash-map order, so two trainings on the same texts can give different
//! vocabularies (huggingface/tokenizers#1794); its BPE trainer without prefixes or suffixes is
//! deterministic, which keeps runs reproducible (tested).
//!
//! The special tokens have fixed ids, which the augmentations rely on: [`PAD_ID`] `[PAD]`,
//! [`UNK_ID`] `[UNK]`, [`MASK_ID`] `[MASK]`.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::normalizers::unicode::NFKC;
use tokenizers::normalizers::utils::{Lowercase, Sequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// Id of `[PAD]`, the padding of short sequences in a batch.
pub const PAD_ID: u32 = 0;
/// Id of `[UNK]`, which stands for an empty text (byte-level BPE spells every other text).
pub const UNK_ID: u32 = 1;
/// Id of `[MASK]`, what [`TokenMask`](crate::augment::TokenMask) puts in place of a token.
pub const MASK_ID: u32 = 2;
/// The special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 3] = ["[PAD]", "[UNK]", "[MASK]"];

/// A tokenizer that cannot be trained, read or used.
#[derive(Debug, thiserror::Error)]
#[error("tokenizer: {0}")]
pub struct TokenizerError(pub String);

/// A trained byte-level BPE vocabulary with its normalizer and pre-tokenizer.
#[derive(Clone)]
pub struct Vocabulary {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vocabulary({} tokens)", self.len())
    }
}

impl Vocabulary {
    /// Trains a byte-level BPE vocabulary of at most `vocab_size` tokens (special tokens and
    /// the 256 byte symbols included) on `texts`, merging pairs seen at least `min_frequency`
    /// times. The same texts and settings always give the same vocabulary.
    ///
    /// # Errors
    /// [`TokenizerError`] when training fails or yields a vocabulary without the special
    /// tokens at their ids.
    pub fn train(
        texts: &[String],
        vocab_size: usize,
        min_frequency: u64,
        lowercase: bool,
    ) -> Result<Self, TokenizerError> {
        let mut tokenizer = Tokenizer::new(BPE::default());
        let mut normalizers: Vec<NormalizerWrapper> = vec![NFKC.into()];
        if lowercase {
            normalizers.push(Lowercase.into());
        }
        tokenizer
            .with_normalizer(Some(Sequence::new(normalizers)))
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_decoder(Some(ByteLevelDecoder::default()));
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::default()
            .vocab_size(vocab_size)
            .min_frequency(min_frequency)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .special_tokens(
                SPECIAL_TOKENS
                    .iter()
                    .map(|t| AddedToken::from(t.to_string(), true))
                    .collect(),
            )
            .build()
            .into();
        tokenizer
            .train(&mut trainer, texts.iter())
            .map_err(|e| TokenizerError(e.to_string()))?;
        Self::checked(tokenizer)
    }

    /// Reads a vocabulary from the JSON of [`to_json`](Vocabulary::to_json) (the `tokenizers`
    /// library's `tokenizer.json` format).
    ///
    /// # Errors
    /// [`TokenizerError`] when the JSON is malformed or lacks the special tokens at their ids.
    pub fn from_json(json: &str) -> Result<Self, TokenizerError> {
        let tokenizer: Tokenizer = json
            .parse()
            .map_err(|e: Box<dyn std::error::Error + Send + Sync>| TokenizerError(e.to_string()))?;
        Self::checked(tokenizer)
    }

    fn checked(tokenizer: Tokenizer) -> Result<Self, TokenizerError> {
        for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
            if tokenizer.token_to_id(token) != Some(id as u32) {
                return Err(TokenizerError(format!(
                    "the vocabulary must hold {token} at id {id}"
                )));
            }
        }
        Ok(Self { tokenizer })
    }

    /// The `tokenizer.json` text of this vocabulary.
    pub fn to_json(&self) -> String {
        self.tokenizer
            .to_string(false)
            .expect("a trained tokenizer serializes")
    }

    /// Number of tokens, special tokens included.
    pub fn len(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Whether the vocabulary is empty (never, once trained).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The token ids of `text`, at most `max_len` of them (the rest is cut off). An empty or
    /// blank text gives `[UNK]`, so that no sequence is empty.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = self
            .tokenizer
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default();
        ids.truncate(max_len.max(1));
        if ids.is_empty() {
            ids.push(UNK_ID);
        }
        ids
    }

    /// The text of `ids` (normalized: NFKC, lowercased if so trained), special tokens left
    /// out.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids, true).unwrap_or_default()
    }
}
