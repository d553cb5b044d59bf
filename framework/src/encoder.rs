//! The `Encoder` plugin trait: the network f that BYOL trains.

use burn::module::{Module, ModuleDisplay};
use burn::tensor::Tensor;

/// A burn module mapping a batch of a modality's input to representations `[batch, dim]`.
///
/// `dim` is known up front: the BYOL projector is built from it. The online encoder is what the
/// evaluation probes read (docs/design.md: "probes read the online encoder (f only)").
///
/// # Example
/// ```
/// use ssl_framework::burn::prelude::*;
/// use ssl_framework::burn::nn::{Linear, LinearConfig};
/// use ssl_framework::Encoder;
///
/// /// A linear encoder of flat feature vectors `[batch, 8]` -> `[batch, 4]`.
/// #[derive(Module, Debug)]
/// struct LinearEncoder { proj: Linear }
///
/// impl Encoder for LinearEncoder {
///     type Input = Tensor<2>;
///     fn forward(&self, x: Tensor<2>) -> Tensor<2> { self.proj.forward(x) }
///     fn dim(&self) -> usize { 4 }
/// }
///
/// let device = Device::flex();
/// let enc = LinearEncoder { proj: LinearConfig::new(8, 4).init(&device) };
/// let out = enc.forward(Tensor::zeros([3, 8], &device));
/// assert_eq!(out.dims(), [3, enc.dim()]);
/// ```
pub trait Encoder: Module + ModuleDisplay + 'static {
    /// A collated batch on one device, e.g. `Tensor<4>` `[batch, channels, height, width]`.
    type Input: Clone + Send + 'static;
    /// Representations `[batch, dim]`.
    fn forward(&self, input: Self::Input) -> Tensor<2>;

    /// Whether [`Encoder::forward`] runs on a copy whose float parameters are in a half type
    /// (`train.precision = "bf16"` or `"f16"`, [`crate::byol::precision`]): the parameters of
    /// BatchNorm and LayerNorm stay f32, the others are bf16 or f16, and the input comes as the
    /// modality makes it (f32). An encoder that says so casts where types meet: it calls
    /// [`crate::layers`]' convolutions, [`crate::layers::linear`], BatchNorm and
    /// [`crate::layers::layer_norm`] (which cast), casts float tensors it makes itself (masks)
    /// to the activations' type, and returns f32 representations (pooling in f32,
    /// [`crate::layers::cast_to`]). Buffers (`RunningState`) outside BatchNorm and LayerNorm
    /// are cast in place, so such an encoder keeps them in those layers or says `false`. The
    /// default, `false`, makes the trainer (and [`crate::byol::update()`]) refuse
    /// mixed precision for this encoder with an error naming `train.precision`.
    fn mixed_precision(&self) -> bool {
        false
    }

    /// The representation size (output width).
    fn dim(&self) -> usize;
    /// How `ssl export` names this encoder's tensors (e.g. torchvision's names for a ResNet).
    /// Default: the module's own parameter paths.
    fn export_naming(&self) -> ExportNaming {
        ExportNaming::default()
    }
}

/// How an encoder's tensors are named in an export ([`crate::export::export_encoder`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportNaming {
    /// `(regex, replacement)` pairs applied to the module's parameter paths, in order.
    pub renames: Vec<(String, String)>,
    /// safetensors metadata entries, e.g. `("naming", "torchvision")`.
    pub metadata: Vec<(String, String)>,
    /// What the names are, for a person: e.g. `torchvision resnet18 names`.
    pub description: String,
}

impl Default for ExportNaming {
    /// The module's own parameter paths, recorded as `naming = "ssl"`.
    fn default() -> Self {
        Self {
            renames: Vec::new(),
            metadata: vec![("naming".into(), "ssl".into())],
            description: "the module's own names".into(),
        }
    }
}
