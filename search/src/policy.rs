//! Policies: the parameter space of a modality's search space, and points of it turned into
//! the two views' op lists that `ssl train` reads (`[[augment.view1]]`, `[[augment.view2]]`).
//!
//! A policy is, per view, `n` ops (`space.min_ops..=space.max_ops`), each with an op name, a
//! probability `p` and a magnitude `m` in `[0, 1]` (the op's documented mapping, see
//! [`SearchSpace`]). View `v`'s pipeline is the modality's crop, then each op in order
//! (wrapped in `RandomApply { p }` unless `p = 1`), then the modality's finishing ops. The two
//! views share one policy or have their own (`space.views = "shared" | "separate" | "search"`,
//! the last letting the sampler choose).

use crate::SearchError;
use crate::params::{Dim, ParamSpace, Params};
use serde::{Deserialize, Serialize};
use ssl_framework::Modality;
use ssl_framework::search_space::{SearchSpace, clone_ops, one_of, random_apply};

/// Whether the two views share a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewSharing {
    /// Both views use one policy (as in RandAugment-style searches).
    Shared,
    /// Each view has its own policy (as BYOL's asymmetric views).
    Separate,
    /// The sampler chooses (a categorical parameter `shared`).
    Search,
}

/// The `[space]` section of a search file: the policy space within the modality's ops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpaceConfig {
    /// Fewest ops per view (after the crop), `>= 0`.
    pub min_ops: usize,
    /// Most ops per view, `>= min_ops`, `<= 8`.
    pub max_ops: usize,
    /// Whether the views share a policy.
    pub views: ViewSharing,
    /// Range of each op's probability, within `[0, 1]`.
    pub probability: [f64; 2],
    /// Range of each op's magnitude, within `[0, 1]`.
    pub magnitude: [f64; 2],
    /// The modality's ops the search may use (empty: all of them).
    pub ops: Vec<String>,
    /// Magnitude levels of the parameter-free random baseline (TrivialAugment: one op and one
    /// level drawn uniformly per sample), `>= 2`.
    pub random_levels: usize,
}

impl Default for SpaceConfig {
    fn default() -> Self {
        Self {
            min_ops: 1,
            max_ops: 3,
            views: ViewSharing::Search,
            probability: [0.2, 1.0],
            magnitude: [0.0, 1.0],
            ops: Vec::new(),
            random_levels: 11,
        }
    }
}

/// The two views' op lists of one policy.
pub struct Policy<Op> {
    /// View 1's pipeline (crop, searched ops, finishing ops).
    pub view1: Vec<Op>,
    /// View 2's pipeline.
    pub view2: Vec<Op>,
}

impl<Op: Serialize + serde::de::DeserializeOwned> Policy<Op> {
    /// The policy as JSON: `{ "view1": [ops], "view2": [ops] }` (the journal's form).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "view1": self.view1, "view2": self.view2 })
    }

    /// The policy stored by [`to_json`](Policy::to_json).
    ///
    /// # Errors
    /// [`SearchError::Journal`] when the JSON is not two lists of the modality's ops.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, SearchError> {
        let view = |k: &str| -> Result<Vec<Op>, SearchError> {
            serde_json::from_value(v[k].clone()).map_err(|e| {
                SearchError::Journal(format!("a stored policy's {k} is not a list of ops: {e}"))
            })
        };
        Ok(Self {
            view1: view("view1")?,
            view2: view("view2")?,
        })
    }
}

/// The searched ops of `space` after `cfg.ops` (indices into `space.ops`).
///
/// # Errors
/// [`SearchError::Settings`] for an op name the modality does not offer, an empty list, or
/// bad ranges.
pub fn allowed_ops<Op>(
    space: &SearchSpace<Op>,
    cfg: &SpaceConfig,
) -> Result<Vec<usize>, SearchError>
where
    Op: Serialize + serde::de::DeserializeOwned,
{
    let bad = |msg: String| Err(SearchError::Settings(msg));
    if cfg.max_ops < cfg.min_ops || cfg.max_ops > 8 {
        return bad(format!(
            "space.max_ops = {}: expected between space.min_ops = {} and 8",
            cfg.max_ops, cfg.min_ops
        ));
    }
    for (key, r) in [
        ("probability", cfg.probability),
        ("magnitude", cfg.magnitude),
    ] {
        if !(r.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) && r[0] <= r[1]) {
            return bad(format!(
                "space.{key} = {r:?}: expected [min, max] with 0 <= min <= max <= 1"
            ));
        }
    }
    if cfg.random_levels < 2 {
        return bad(format!(
            "space.random_levels = {}: expected at least 2",
            cfg.random_levels
        ));
    }
    if cfg.ops.is_empty() {
        if space.ops.is_empty() {
            return bad("the modality's search space has no ops".into());
        }
        return Ok((0..space.ops.len()).collect());
    }
    cfg.ops
        .iter()
        .map(|name| {
            space
                .ops
                .iter()
                .position(|o| o.name == name)
                .ok_or_else(|| {
                    SearchError::Settings(format!(
                        "space.ops: {name:?} is not an op of this modality's search space ({})",
                        space
                            .ops
                            .iter()
                            .map(|o| o.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        })
        .collect()
}

fn views_searched(cfg: &SpaceConfig) -> &'static [&'static str] {
    match cfg.views {
        ViewSharing::Shared => &["view1"],
        _ => &["view1", "view2"],
    }
}

/// The sampler's parameter space: `shared` (when the views' sharing is searched), then per
/// view `<view>.n_ops`, and per op slot `i`: `<view>.op<i>` (categorical over the allowed ops),
/// `<view>.p<i>`, `<view>.m<i>`.
pub fn param_space(n_allowed: usize, cfg: &SpaceConfig) -> ParamSpace {
    let mut s = ParamSpace::default();
    if cfg.views == ViewSharing::Search {
        s.push("shared", Dim::Categorical { n: 2 });
    }
    for view in views_searched(cfg) {
        s.push(
            format!("{view}.n_ops"),
            Dim::Int {
                lo: cfg.min_ops as i64,
                hi: cfg.max_ops as i64,
            },
        );
        for i in 0..cfg.max_ops {
            s.push(format!("{view}.op{i}"), Dim::Categorical { n: n_allowed });
            s.push(
                format!("{view}.p{i}"),
                Dim::Float {
                    lo: cfg.probability[0],
                    hi: cfg.probability[1],
                },
            );
            s.push(
                format!("{view}.m{i}"),
                Dim::Float {
                    lo: cfg.magnitude[0],
                    hi: cfg.magnitude[1],
                },
            );
        }
    }
    s
}

/// One op of a decoded policy, for reports: name, probability, magnitude.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpChoice {
    /// The op's config name.
    pub op: String,
    /// Probability of applying it.
    pub p: f64,
    /// Magnitude in `[0, 1]`.
    pub m: f64,
}

/// The choices of each view encoded by `params` (view 2 equals view 1 when shared).
pub fn choices<Op>(
    space: &SearchSpace<Op>,
    allowed: &[usize],
    cfg: &SpaceConfig,
    params: &Params,
) -> [Vec<OpChoice>; 2] {
    let shared = match cfg.views {
        ViewSharing::Shared => true,
        ViewSharing::Separate => false,
        ViewSharing::Search => params.get("shared").copied().unwrap_or(0.0) >= 0.5,
    };
    let view = |v: &str| -> Vec<OpChoice> {
        let n = params.get(&format!("{v}.n_ops")).copied().unwrap_or(0.0) as usize;
        (0..n.min(cfg.max_ops))
            .map(|i| {
                let idx = params[&format!("{v}.op{i}")] as usize;
                OpChoice {
                    op: space.ops[allowed[idx.min(allowed.len() - 1)]]
                        .name
                        .to_string(),
                    p: params[&format!("{v}.p{i}")],
                    m: params[&format!("{v}.m{i}")],
                }
            })
            .collect()
    };
    let v1 = view("view1");
    let v2 = if shared { v1.clone() } else { view("view2") };
    [v1, v2]
}

/// A one-line description of a policy's choices, e.g.
/// `view1: TimeMask(p 0.80, m 0.42) > Gain(p 1.00, m 0.10) | view2: same`.
pub fn describe(choices: &[Vec<OpChoice>; 2]) -> String {
    let view = |c: &[OpChoice]| {
        if c.is_empty() {
            "crop only".to_string()
        } else {
            c.iter()
                .map(|o| format!("{}(p {:.2}, m {:.2})", o.op, o.p, o.m))
                .collect::<Vec<_>>()
                .join(" > ")
        }
    };
    let v2 = if choices[0] == choices[1] {
        "same".to_string()
    } else {
        view(&choices[1])
    };
    format!("view1: {} | view2: {v2}", view(&choices[0]))
}

/// Builds the two views' pipelines of `choices`.
///
/// # Errors
/// [`SearchError::Settings`] when an op is unknown or a built op is invalid.
pub fn build<M: Modality>(
    space: &SearchSpace<M::Op>,
    choices: &[Vec<OpChoice>; 2],
) -> Result<Policy<M::Op>, SearchError> {
    let view = |c: &[OpChoice]| -> Result<Vec<M::Op>, SearchError> {
        let mut ops = clone_ops(&space.crop);
        for choice in c {
            let op = space.op(&choice.op).ok_or_else(|| {
                SearchError::Settings(format!("{:?} is not an op of the search space", choice.op))
            })?;
            let built = (op.build)(choice.m.clamp(0.0, 1.0));
            ops.push(if choice.p >= 1.0 {
                built
            } else {
                random_apply(choice.p, vec![built])
                    .map_err(|e| SearchError::Settings(e.to_string()))?
            });
        }
        ops.extend(clone_ops(&space.finish));
        Ok(ops)
    };
    Ok(Policy {
        view1: view(&choices[0])?,
        view2: view(&choices[1])?,
    })
}

/// The "crop only" baseline: the modality's crop and finishing ops, nothing else.
pub fn crop_only<Op: Serialize + serde::de::DeserializeOwned>(
    space: &SearchSpace<Op>,
) -> Policy<Op> {
    let view = || {
        let mut ops = clone_ops(&space.crop);
        ops.extend(clone_ops(&space.finish));
        ops
    };
    Policy {
        view1: view(),
        view2: view(),
    }
}

/// The parameter-free random baseline, TrivialAugment-style (Müller & Hutter 2021): after the
/// crop, each sample gets one op drawn uniformly from the allowed ops at a magnitude drawn
/// uniformly from `levels` evenly spaced levels over `[0, 1]` (`OneOf` over every
/// (op, level) pair, which is uniform over ops, then levels); both views alike.
///
/// # Errors
/// [`SearchError::Settings`] when the combinator cannot be built.
pub fn trivial_augment<M: Modality>(
    space: &SearchSpace<M::Op>,
    allowed: &[usize],
    levels: usize,
) -> Result<Policy<M::Op>, SearchError> {
    let view = || -> Result<Vec<M::Op>, SearchError> {
        let mut choices = Vec::new();
        for &i in allowed {
            for l in 0..levels {
                let m = l as f64 / (levels - 1).max(1) as f64;
                choices.push((space.ops[i].build)(m));
            }
        }
        let mut ops = clone_ops(&space.crop);
        ops.push(one_of(choices).map_err(|e| SearchError::Settings(e.to_string()))?);
        ops.extend(clone_ops(&space.finish));
        Ok(ops)
    };
    Ok(Policy {
        view1: view()?,
        view2: view()?,
    })
}
