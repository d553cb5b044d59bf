//! BYOL (Grill et al. 2020, arXiv 2006.07733, Section 3.1 and Appendix A/J): the online and
//! target networks, the MLP heads, the loss, the target's EMA with its tau schedule, and the
//! step itself, [`update()`] in [`step`], where they meet, in f32 or mixed precision
//! ([`precision`]); the online linear probe trained beside it ([`online_probe`]).

pub mod collapse;
pub mod ema;
pub mod finite;
pub mod heads;
pub mod loss;
pub mod network;
pub mod online_probe;
pub mod precision;
pub mod step;

pub use collapse::{CollapseMetrics, collapse_std, effective_rank};
pub use ema::{EmaError, TargetEma, ema_update, tau_at};
pub use finite::{non_finite_gradient, non_finite_parameter};
pub use heads::{Mlp, MlpConfig};
pub use loss::{LossTerms, byol_loss, regression_loss};
pub use network::{OnlineNetwork, TargetNetwork};
pub use online_probe::{OnlineProbe, OnlineProbeRecord};
pub use precision::{LossScale, compute_copy};
pub use step::{ByolState, StepLoss, StepOutcome, StepSchedules, UpdateError, Views, update};
