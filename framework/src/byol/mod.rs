//! BYOL: online and target networks, MLP heads, the loss, the EMA update and the tau schedule
//! (Grill et al. 2020, arXiv 2006.07733, Section 3.1 and Appendix A/J).

pub mod ema;
pub mod heads;
pub mod loss;
pub mod network;
pub mod schedule;
pub mod step;

pub use ema::{EmaError, ema_update};
pub use heads::{Mlp, MlpConfig};
pub use loss::{byol_loss, regression_loss};
pub use network::{OnlineNetwork, TargetNetwork};
pub use schedule::tau_at;
pub use step::{LossTerms, forward_loss, forward_loss_terms};
