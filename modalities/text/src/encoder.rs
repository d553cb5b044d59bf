//! A small Transformer encoder for token sequences: token embeddings plus learned position
//! embeddings, burn's pre-norm Transformer encoder layers (Vaswani et al. 2017; pre-norm as in
//! GPT-2), a final LayerNorm, then the mean of the token states over the non-padding positions.

use burn::nn::attention::MultiHeadAttention;
use burn::nn::transformer::{
    PositionWiseFeedForward, TransformerEncoder, TransformerEncoderConfig, TransformerEncoderLayer,
};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::DType;
use ssl_framework::Encoder;
use ssl_framework::layers::{cast_to, dropout, in_f32, layer_norm, linear};

/// A batch of token sequences on a device.
#[derive(Debug, Clone)]
pub struct TextInput {
    /// Token ids `[batch, length]`, padded with `[PAD]` (id 0).
    pub ids: Tensor<2, Int>,
    /// `true` at padding positions, `[batch, length]`.
    pub padding: Tensor<2, Bool>,
    /// Per-sequence dropout rate of the token embeddings `[batch]`, when any is non-zero
    /// (set by the `EncoderDropout` augmentation).
    pub dropout: Option<Tensor<1>>,
}

/// The encoder: [`TextInput`] `[batch, length]` -> `[batch, d_model]`.
#[derive(Module, Debug)]
pub struct TextEncoder {
    tokens: Embedding,
    positions: Embedding,
    layers: TransformerEncoder,
    norm: LayerNorm,
    d_model: usize,
    max_len: usize,
}

impl TextEncoder {
    /// An encoder for ids `< vocab_size` and sequences of at most `max_len` tokens, with
    /// `layers` layers of width `d_model`, `heads` attention heads, feed-forward width `d_ff`
    /// and dropout `dropout` inside the layers.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vocab_size: usize,
        max_len: usize,
        d_model: usize,
        heads: usize,
        layers: usize,
        d_ff: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        // Embeddings drawn from N(0, 0.02) (GPT-2, BERT), not burn's default N(0, 1): at unit
        // scale they dwarf the attention and feed-forward outputs in the residual stream and
        // Adam's updates, so a pre-trained encoder stays close to its random init (measured:
        // the same probe accuracies as the random-init encoder after 3 epochs on VADER).
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, d_model)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        Self {
            tokens: embedding(vocab_size),
            positions: embedding(max_len),
            layers: TransformerEncoderConfig::new(d_model, d_ff, heads, layers)
                .with_dropout(dropout)
                .with_norm_first(true)
                .init(device),
            norm: LayerNormConfig::new(d_model).init(device),
            d_model,
            max_len,
        }
    }

    /// The longest sequence the position embeddings cover.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl Encoder for TextEncoder {
    type Input = TextInput;

    fn forward(&self, input: TextInput) -> Tensor<2> {
        let [batch, len] = input.ids.dims();
        let device = input.ids.device();
        let len = len.min(self.max_len);
        let ids = input.ids.slice([0..batch, 0..len]);
        let padding = input.padding.slice([0..batch, 0..len]);
        let mut x = self.tokens.forward(ids);
        if let Some(rates) = input.dropout {
            // Inverted dropout with one rate per sequence, a fresh mask every forward pass.
            let shape = [batch, len, self.d_model];
            let rates = rates.reshape([batch, 1, 1]).expand(shape);
            let uniform = Tensor::<3>::random(
                shape,
                burn::tensor::Distribution::Uniform(0.0, 1.0),
                &device,
            );
            let keep = uniform.greater_equal(rates.clone()).float();
            let scale = rates.neg().add_scalar(1.0).recip();
            let dtype = x.dtype();
            x = x * cast_to(keep * scale, dtype);
        }
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
        x = x + self.positions.forward(positions);
        let h = transformer(&self.layers, x, &padding);
        // The final norm and the mean in f32 under mixed precision (the representation is f32).
        let h = self.norm.forward(cast_to(h, DType::F32));
        // Mean over the real tokens.
        let valid = padding.bool_not().float().reshape([batch, len, 1]);
        let sum = (h * valid.clone())
            .sum_dim(1)
            .reshape([batch, self.d_model]);
        let count = valid.sum_dim(1).reshape([batch, 1]).clamp_min(1.0);
        sum / count
    }

    fn mixed_precision(&self) -> bool {
        true
    }

    fn dim(&self) -> usize {
        self.d_model
    }
}

/// burn's `TransformerEncoder::forward` on `x` `[batch, len, d_model]` with the key padding
/// `padding` `[batch, len]` (`true` at padding), op for op over burn's own modules (so the
/// weights and checkpoints are burn's), except that every dropout draws its mask through
/// [`ssl_framework::layers::dropout`]: on the CPU a fast parallel generator instead of
/// burn-flex's per-value one, a third of the BYOL step. Returns `[batch, len, d_model]`.
fn transformer(encoder: &TransformerEncoder, x: Tensor<3>, padding: &Tensor<2, Bool>) -> Tensor<3> {
    encoder
        .layers
        .iter()
        .fold(x, |x, layer| encoder_layer(layer, x, padding))
}

/// One layer of [`transformer`]: `TransformerEncoderLayer::forward` (pre-norm when
/// `norm_first`, post-norm otherwise).
fn encoder_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    padding: &Tensor<2, Bool>,
) -> Tensor<3> {
    let residual = if layer.norm_first {
        layer_norm(&layer.norm_2, x.clone())
    } else {
        x.clone()
    };
    let residual = self_attention(&layer.mha, residual, padding);
    let mut x = x + dropout(&layer.dropout, residual);
    let residual = if layer.norm_first {
        layer_norm(&layer.norm_1, x.clone())
    } else {
        x = layer_norm(&layer.norm_1, x);
        x.clone()
    };
    let residual = feed_forward(&layer.pwff, residual);
    let x = x + dropout(&layer.dropout, residual);
    if layer.norm_first {
        x
    } else {
        layer_norm(&layer.norm_2, x)
    }
}

/// `MultiHeadAttention::forward` of `x` `[batch, len, d_model]` on itself with the key padding
/// `padding`: the context `[batch, len, d_model]` (Vaswani et al. 2017, section 3.2.2).
fn self_attention(mha: &MultiHeadAttention, x: Tensor<3>, padding: &Tensor<2, Bool>) -> Tensor<3> {
    let [batch, len, d_model] = x.dims();
    let heads = |l: &burn::nn::Linear| {
        linear(l, x.clone())
            .reshape([batch, len, mha.n_heads, mha.d_k])
            .swap_dims(1, 2)
    };
    let (query, key, value) = (heads(&mha.query), heads(&mha.key), heads(&mha.value));
    let scale = (mha.d_k as f32).sqrt();
    let scores = if query.dtype() == DType::F32 {
        query.matmul(key.transpose()).div_scalar(scale)
    } else {
        // In a half type the query is scaled before the product, whose unscaled values could
        // pass f16's largest, 65504.
        query.div_scalar(scale).matmul(key.transpose())
    };
    let scores = scores.mask_fill(padding.clone().reshape([batch, 1, 1, len]), mha.min_float);
    // In f32 under mixed precision: a sum of exponentials.
    let weights = in_f32(scores, |scores| {
        if mha.quiet_softmax {
            burn::tensor::activation::quiet_softmax(scores, 3)
        } else {
            burn::tensor::activation::softmax(scores, 3)
        }
    });
    let weights = dropout(&mha.dropout, weights);
    let context = weights
        .matmul(value)
        .swap_dims(1, 2)
        .reshape([batch, len, d_model]);
    linear(&mha.output, context)
}

/// `PositionWiseFeedForward::forward`: `[batch, len, d_model]` through the inner layer, its
/// activation, dropout and the outer layer.
fn feed_forward(pwff: &PositionWiseFeedForward, x: Tensor<3>) -> Tensor<3> {
    let x = pwff.activation.forward(linear(&pwff.linear_inner, x));
    linear(&pwff.linear_outer, dropout(&pwff.dropout, x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::transformer::TransformerEncoderInput;

    /// Without dropout (the modules in eval mode), [`transformer`] is burn's forward, value for
    /// value, with and without padding, pre-norm and post-norm.
    #[test]
    fn transformer_is_burns_forward_without_dropout() {
        let device = Device::flex().autodiff();
        device.seed(3);
        for norm_first in [true, false] {
            let encoder = TransformerEncoderConfig::new(32, 64, 4, 2)
                .with_dropout(0.1)
                .with_norm_first(norm_first)
                .init(&device)
                .valid();
            let plain = Device::flex();
            let x = Tensor::<3>::random(
                [3, 7, 32],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &plain,
            );
            let lengths = [7, 4, 1];
            let padding = Tensor::<2, Bool>::from_data(
                TensorData::new(
                    lengths
                        .iter()
                        .flat_map(|&n| (0..7).map(move |t| t >= n))
                        .collect::<Vec<_>>(),
                    [3, 7],
                ),
                &plain,
            );
            let ours = transformer(&encoder, x.clone(), &padding);
            let theirs = encoder.forward(TransformerEncoderInput::new(x).mask_pad(padding));
            ours.into_data().assert_approx_eq::<f32>(
                &theirs.into_data(),
                burn::tensor::Tolerance::absolute(0.0),
            );
        }
    }
}
