//! The online network (encoder f, projector g, predictor q) and the target network (f, g), an
//! exponential moving average of the online one.

use super::heads::{Mlp, MlpConfig};
use crate::config::ByolConfig;
use crate::encoder::Encoder;
use burn::prelude::*;

/// The online network: `q(g(f(x)))`, trained by gradient descent.
#[derive(Module, Debug)]
pub struct OnlineNetwork<E: Encoder> {
    /// The encoder f: what the probes read and what is exported.
    pub encoder: E,
    /// The projector g.
    pub projector: Mlp,
    /// The predictor q (`None` for the paper's "no predictor" ablation).
    pub predictor: Option<Mlp>,
}

/// The outputs of the online network on one view.
pub struct OnlineOutput {
    /// Representation `f(x)`, `[batch, encoder dim]` (read by the online probe).
    pub representation: Tensor<2>,
    /// Projection `g(f(x))`, `[batch, projection_dim]` (read by the collapse metric).
    pub projection: Tensor<2>,
    /// Prediction `q(g(f(x)))`, `[batch, projection_dim]` (equal to the projection without a
    /// predictor).
    pub prediction: Tensor<2>,
}

impl<E: Encoder> OnlineNetwork<E> {
    /// Builds the heads on top of `encoder` as configured (sizes from `cfg`).
    pub fn new(encoder: E, cfg: &ByolConfig, device: &Device) -> Self {
        let projector = MlpConfig {
            input: encoder.dim(),
            hidden: cfg.projector_hidden,
            output: cfg.projection_dim,
        }
        .init(device);
        let predictor = cfg.predictor.then(|| {
            MlpConfig {
                input: cfg.projection_dim,
                hidden: cfg.predictor_hidden,
                output: cfg.projection_dim,
            }
            .init(device)
        });
        Self {
            encoder,
            projector,
            predictor,
        }
    }

    /// Forward pass on one batch of views.
    pub fn forward(&self, x: E::Input) -> OnlineOutput {
        let representation = self.encoder.forward(x);
        let projection = self.projector.forward(representation.clone());
        let prediction = match &self.predictor {
            Some(q) => q.forward(projection.clone()),
            None => projection.clone(),
        };
        OnlineOutput {
            representation,
            projection,
            prediction,
        }
    }

    /// A new target network: an independent deep copy of f and g (own parameters, own
    /// BatchNorm running statistics), on the same autodiff device, BatchNorm in training mode,
    /// parameters not requiring gradients. A plain `clone()` would share BatchNorm statistics
    /// with the online network (BURN.md).
    pub fn make_target(&self) -> TargetNetwork<E> {
        TargetNetwork {
            encoder: self.encoder.valid().train().no_grad(),
            projector: self.projector.valid().train().no_grad(),
        }
    }
}

/// The target network `g(f(x))`: never receives gradients; updated only by
/// [`ema_update`](super::ema_update).
#[derive(Module, Debug)]
pub struct TargetNetwork<E: Encoder> {
    /// Target encoder.
    pub encoder: E,
    /// Target projector.
    pub projector: Mlp,
}

impl<E: Encoder> TargetNetwork<E> {
    /// Target projection `[batch, projection_dim]`, detached (the stop-gradient of the paper).
    pub fn forward(&self, x: E::Input) -> Tensor<2> {
        self.projector.forward(self.encoder.forward(x)).detach()
    }
}
