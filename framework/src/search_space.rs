//! What a modality lets `ssl search-augment` choose: its augmentation search space.
//!
//! A policy is a list of ops per view, each with a probability and a **magnitude**
//! `m` in `[0, 1]`. Every op declares one fixed, documented mapping from `m` to its parameters
//! (e.g. audio `TimeMask`: `max_width = round(32 m)` frames), so a magnitude means the same thing
//! in every study and every report (peers' inconsistent magnitude scales are a known source of
//! bugs). `m = 0` is the op's mildest setting (often the identity), `m = 1` its strongest
//! useful one. The search itself never looks inside an op: it builds ops through
//! [`SearchOp::build`] and wraps them in the generic combinators (`RandomApply`, `OneOf`)
//! through serde, which every modality registers with
//! [`register_combinators!`](crate::register_combinators).

use crate::augmentation::{Augmentation, AugmentationError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One op a policy may use.
pub struct SearchOp<Op> {
    /// The op's config name (its typetag name, e.g. `"TimeMask"`).
    pub name: &'static str,
    /// What the magnitude sets, in words with units (shown in reports and `--help` output),
    /// e.g. `"max_width = round(16 m) frames, count = 1"`; `"none"` when the op has no
    /// strength (its probability is all the search chooses).
    pub magnitude: &'static str,
    /// Builds the op at magnitude `m` in `[0, 1]`. Must return a valid op for every `m` in
    /// `[0, 1]` (a unit test of each modality checks it).
    pub build: Box<dyn Fn(f64) -> Op + Send + Sync>,
}

/// A modality's augmentation search space.
pub struct SearchSpace<Op> {
    /// Ops every view begins with, before the searched ones: the crop to the training size
    /// (image crop, audio segment, text span). The "crop-only" baseline is `crop` + `finish`.
    pub crop: Vec<Op>,
    /// Deterministic ops every view ends with (e.g. normalization).
    pub finish: Vec<Op>,
    /// The ops a policy chooses from, in a fixed order (a categorical parameter's values).
    pub ops: Vec<SearchOp<Op>>,
}

impl<Op> SearchSpace<Op>
where
    Op: Serialize + DeserializeOwned,
{
    /// The op named `name`, if the space has it.
    pub fn op(&self, name: &str) -> Option<&SearchOp<Op>> {
        self.ops.iter().find(|o| o.name == name)
    }
}

/// `RandomApply { p, ops }` of the modality's op type, built through serde (every modality
/// registers the combinators).
///
/// # Errors
/// [`AugmentationError`] when `p` is outside `[0, 1]` or the modality did not register the
/// combinators.
pub fn random_apply<S, Op>(p: f64, ops: Vec<Op>) -> Result<Op, AugmentationError>
where
    Op: Augmentation<S> + Serialize + DeserializeOwned,
{
    combinator(serde_json::json!({ "type": "RandomApply", "p": p, "ops": ops }))
}

/// `OneOf { ops }` (one op chosen uniformly per sample) of the modality's op type.
///
/// # Errors
/// [`AugmentationError`] when `ops` is empty or the modality did not register the combinators.
pub fn one_of<S, Op>(ops: Vec<Op>) -> Result<Op, AugmentationError>
where
    Op: Augmentation<S> + Serialize + DeserializeOwned,
{
    combinator(serde_json::json!({ "type": "OneOf", "ops": ops }))
}

fn combinator<S, Op>(value: serde_json::Value) -> Result<Op, AugmentationError>
where
    Op: Augmentation<S> + DeserializeOwned,
{
    let name = value["type"].as_str().unwrap_or("").to_string();
    let op: Op = serde_json::from_value(value).map_err(|e| {
        AugmentationError::new(
            &name,
            "type",
            &name,
            format!("a combinator registered with register_combinators! ({e})"),
        )
    })?;
    op.validate()?;
    Ok(op)
}

/// A copy of `ops` (ops are boxed trait objects; the copy goes through serde).
pub fn clone_ops<Op: Serialize + DeserializeOwned>(ops: &[Op]) -> Vec<Op> {
    serde_json::from_value(serde_json::to_value(ops).expect("ops serialize"))
        .expect("ops deserialize")
}

/// Checks that every op of `space` builds a valid op at magnitudes 0, 0.25, 0.5, 0.75 and 1
/// (for modalities' unit tests).
///
/// # Errors
/// The first op and magnitude whose op fails validation, with the reason.
pub fn check_space<S, Op>(space: &SearchSpace<Op>) -> Result<(), String>
where
    Op: Augmentation<S> + Serialize + DeserializeOwned,
{
    for op in &space.ops {
        for m in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let built = (op.build)(m);
            built
                .validate()
                .map_err(|e| format!("{} at magnitude {m}: {e}", op.name))?;
            if built.name() != op.name {
                return Err(format!(
                    "{} at magnitude {m} built an op named {}",
                    op.name,
                    built.name()
                ));
            }
        }
    }
    for op in space.crop.iter().chain(&space.finish) {
        op.validate().map_err(|e| e.to_string())?;
    }
    Ok(())
}
