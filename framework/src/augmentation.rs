//! The `Augmentation` plugin trait and its combinators (`RandomApply`, `OneOf`).
//!
//! An augmentation is a random transform of one sample. Its randomness comes only from the
//! `rng` of the [`AugmentContext`] passed in, so a seed reproduces a run; the context also
//! carries other training samples for ops that mix samples, and every combinator passes it on.
//! Pipelines are written in config files: each modality declares one object-safe,
//! typetag-serializable trait for its sample type (for example
//! `VisionAugmentation: Augmentation<Image>`) and registers the generic combinators for it with
//! [`register_combinators!`](crate::register_combinators). A user's own op implements
//! [`Augmentation`] and the modality's typetag trait, and then works in a config file with no
//! change to ssl.

use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// A parameter of an augmentation outside its valid range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("augmentation `{op}`: parameter `{param}` = {value} is invalid: {expected}")]
pub struct AugmentationError {
    /// The op's name as written in config files (its typetag name).
    pub op: String,
    /// The parameter's name.
    pub param: String,
    /// The offending value, formatted.
    pub value: String,
    /// What a valid value looks like.
    pub expected: String,
}

impl AugmentationError {
    /// Builds an error for `op.param = value`, expecting `expected`.
    pub fn new(op: &str, param: &str, value: impl Debug, expected: impl Into<String>) -> Self {
        Self {
            op: op.to_string(),
            param: param.to_string(),
            value: format!("{value:?}"),
            expected: expected.into(),
        }
    }
}

/// Checks that `value` lies in `[lo, hi]`, naming `op.param` otherwise.
pub fn check_range(
    op: &str,
    param: &str,
    value: f64,
    lo: f64,
    hi: f64,
) -> Result<(), AugmentationError> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(AugmentationError::new(
            op,
            param,
            value,
            format!("a number in [{lo}, {hi}]"),
        ))
    }
}

/// Checks that `[a, b]` is an ordered interval inside `[lo, hi]`.
pub fn check_interval(
    op: &str,
    param: &str,
    v: [f64; 2],
    lo: f64,
    hi: f64,
) -> Result<(), AugmentationError> {
    let ok = v.iter().all(|x| x.is_finite() && *x >= lo && *x <= hi) && v[0] <= v[1];
    if ok {
        Ok(())
    } else {
        Err(AugmentationError::new(
            op,
            param,
            v,
            format!("[min, max] with {lo} <= min <= max <= {hi}"),
        ))
    }
}

/// Other samples of the training set, for augmentations that mix samples (e.g. BYOL-A's
/// Mixup, which blends a clip with a past one). The loader draws them with the sample's own
/// seeded `rng`, so runs stay reproducible.
pub trait SampleSource<S> {
    /// A random training sample (before augmentation), or `None` when there is none.
    fn random_sample(&self, rng: &mut StdRng) -> Option<S>;
    /// Whether this source holds samples at all (`false` only for [`NoSamples`]). Mixing ops
    /// check it before drawing anything, so that without a source they draw no random numbers
    /// and the ops after them see the same random stream as if they were absent.
    fn has_samples(&self) -> bool {
        true
    }
}

/// A source without samples (mixing ops then leave their input unchanged and draw nothing).
pub struct NoSamples;

impl<S> SampleSource<S> for NoSamples {
    fn random_sample(&self, _: &mut StdRng) -> Option<S> {
        None
    }
    fn has_samples(&self) -> bool {
        false
    }
}

/// What an augmentation may draw on besides its input: the random number generator (its only
/// source of randomness) and other training samples (for ops that mix samples, e.g. BYOL-A's
/// Mixup).
///
/// The context is passed down unchanged through every combinator (`Compose`, `RandomApply`,
/// `OneOf`, `Box`), so an op sees the same sample source wherever it sits in a pipeline.
/// Callers without training samples (evaluation, fine-tuning, tests) use
/// [`AugmentContext::new`], whose source is [`NoSamples`]; mixing ops then leave their input
/// unchanged.
///
/// # Example
/// ```
/// use ssl_framework::augmentation::{AugmentContext, SampleSource};
/// use ssl_framework::rand::{rngs::StdRng, SeedableRng};
///
/// struct Zeros;
/// impl SampleSource<Vec<f32>> for Zeros {
///     fn random_sample(&self, _: &mut StdRng) -> Option<Vec<f32>> {
///         Some(vec![0.0; 4])
///     }
/// }
///
/// let mut rng = StdRng::seed_from_u64(0);
/// assert_eq!(AugmentContext::<Vec<f32>>::new(&mut rng).sample(), None);
/// let mut ctx = AugmentContext::with_source(&mut rng, &Zeros);
/// assert_eq!(ctx.sample(), Some(vec![0.0; 4]));
/// ```
pub struct AugmentContext<'a, S> {
    /// The only source of randomness of an augmentation: seeded per sample by the loader, so a
    /// seed reproduces a run.
    pub rng: &'a mut StdRng,
    /// Other training samples, for ops that mix samples ([`NoSamples`] when there are none).
    pub source: &'a dyn SampleSource<S>,
}

impl<'a, S> AugmentContext<'a, S> {
    /// A context drawing from `rng`, without other samples ([`NoSamples`]).
    pub fn new(rng: &'a mut StdRng) -> Self {
        Self {
            rng,
            source: &NoSamples,
        }
    }

    /// A context drawing from `rng`, with other training samples from `source`.
    pub fn with_source(rng: &'a mut StdRng, source: &'a dyn SampleSource<S>) -> Self {
        Self { rng, source }
    }

    /// A random other sample from the source, drawn with the context's `rng`; `None` when the
    /// source has none.
    pub fn sample(&mut self) -> Option<S> {
        self.source.random_sample(self.rng)
    }
}

impl<S> Debug for AugmentContext<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AugmentContext").finish_non_exhaustive()
    }
}

/// A random transform of one sample of type `S`.
///
/// Implementations must draw all randomness from the context's `rng` (so a seed reproduces the
/// output), may draw other training samples from its `source` (see [`AugmentContext`]), and
/// must reject invalid parameters in [`validate`](Augmentation::validate), which the config
/// loader calls before any training starts. Combinators pass the context on unchanged.
///
/// # Example
/// ```
/// use ssl_framework::augmentation::{AugmentContext, Augmentation, AugmentationError, check_range};
/// use ssl_framework::rand::{rngs::StdRng, RngExt, SeedableRng};
///
/// /// Adds uniform noise in `[-amplitude, amplitude]` to every element.
/// #[derive(Debug)]
/// struct Jitter { amplitude: f32 }
///
/// impl Augmentation<Vec<f32>> for Jitter {
///     fn name(&self) -> &'static str { "Jitter" }
///     fn validate(&self) -> Result<(), AugmentationError> {
///         check_range("Jitter", "amplitude", self.amplitude as f64, 0.0, 10.0)
///     }
///     fn apply(&self, mut x: Vec<f32>, ctx: &mut AugmentContext<'_, Vec<f32>>) -> Vec<f32> {
///         for v in &mut x { *v += ctx.rng.random_range(-self.amplitude..=self.amplitude); }
///         x
///     }
/// }
///
/// let op = Jitter { amplitude: 0.1 };
/// op.validate().unwrap();
/// let a = op.apply(vec![0.0; 4], &mut AugmentContext::new(&mut StdRng::seed_from_u64(7)));
/// let b = op.apply(vec![0.0; 4], &mut AugmentContext::new(&mut StdRng::seed_from_u64(7)));
/// assert_eq!(a, b);
/// assert!(Jitter { amplitude: -1.0 }.validate().is_err());
/// ```
pub trait Augmentation<S>: Send + Sync + Debug {
    /// The op's name as written in config files.
    fn name(&self) -> &'static str;
    /// Checks every parameter against its valid range.
    ///
    /// # Errors
    /// [`AugmentationError`] naming the op, the parameter, the value and the valid range.
    fn validate(&self) -> Result<(), AugmentationError>;
    /// Transforms one sample, drawing randomness only from `ctx.rng` and other samples only
    /// from `ctx.source`.
    fn apply(&self, x: S, ctx: &mut AugmentContext<'_, S>) -> S;
}

impl<S, A: Augmentation<S> + ?Sized> Augmentation<S> for Box<A> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        (**self).validate()
    }
    fn apply(&self, x: S, ctx: &mut AugmentContext<'_, S>) -> S {
        (**self).apply(x, ctx)
    }
}

/// A sequence of ops applied in order: the pipeline of one view.
impl<S, A: Augmentation<S>> Augmentation<S> for Vec<A> {
    fn name(&self) -> &'static str {
        "Compose"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        self.iter().try_for_each(|op| op.validate())
    }
    fn apply(&self, x: S, ctx: &mut AugmentContext<'_, S>) -> S {
        self.iter().fold(x, |x, op| op.apply(x, ctx))
    }
}

/// Applies its ops in order: a pipeline as one op (a view's list of ops is one already).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose<A> {
    /// The ops, applied in order.
    pub ops: Vec<A>,
}

impl<S, A: Augmentation<S>> Augmentation<S> for Compose<A> {
    fn name(&self) -> &'static str {
        "Compose"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        self.ops.validate()
    }
    fn apply(&self, x: S, ctx: &mut AugmentContext<'_, S>) -> S {
        self.ops.apply(x, ctx)
    }
}

/// Applies the inner ops (in order) with probability `p`, else passes the sample through.
///
/// BYOL's Table 6 uses it for color jitter (p 0.8), grayscale (0.2), blur (1.0 / 0.1) and
/// solarize (0.0 / 0.2).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomApply<A> {
    /// Probability of applying the ops, in `[0, 1]`.
    pub p: f64,
    /// The ops applied together when the coin says so.
    pub ops: Vec<A>,
}

impl<S, A: Augmentation<S>> Augmentation<S> for RandomApply<A> {
    fn name(&self) -> &'static str {
        "RandomApply"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("RandomApply", "p", self.p, 0.0, 1.0)?;
        self.ops.validate()
    }
    fn apply(&self, x: S, ctx: &mut AugmentContext<'_, S>) -> S {
        use rand::RngExt;
        // Always draw, so that the random stream does not depend on p being 0 or 1.
        let u: f64 = ctx.rng.random();
        if u < self.p {
            self.ops.apply(x, ctx)
        } else {
            x
        }
    }
}

/// Applies exactly one of its ops, chosen uniformly at random.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneOf<A> {
    /// The candidates (at least one).
    pub ops: Vec<A>,
}

impl<S, A: Augmentation<S>> Augmentation<S> for OneOf<A> {
    fn name(&self) -> &'static str {
        "OneOf"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        if self.ops.is_empty() {
            return Err(AugmentationError::new(
                "OneOf",
                "ops",
                "[]",
                "at least one op",
            ));
        }
        self.ops.validate()
    }
    fn apply(&self, x: S, ctx: &mut AugmentContext<'_, S>) -> S {
        use rand::RngExt;
        let i = ctx.rng.random_range(0..self.ops.len());
        self.ops[i].apply(x, ctx)
    }
}

/// Registers the generic combinators (`Compose`, `RandomApply`, `OneOf`) with a modality's typetag
/// augmentation trait, so they can be written in config files as
/// `{ type = "RandomApply", p = 0.8, ops = [...] }`.
///
/// `$trait` must be declared with `#[typetag::serde(tag = "type")]` and have
/// [`Augmentation`] as a supertrait.
#[macro_export]
macro_rules! register_combinators {
    ($trait:ident) => {
        #[$crate::typetag::serde(name = "Compose")]
        impl $trait for $crate::augmentation::Compose<Box<dyn $trait>> {}
        #[$crate::typetag::serde(name = "RandomApply")]
        impl $trait for $crate::augmentation::RandomApply<Box<dyn $trait>> {}
        #[$crate::typetag::serde(name = "OneOf")]
        impl $trait for $crate::augmentation::OneOf<Box<dyn $trait>> {}
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[derive(Debug)]
    struct AddOne;
    impl Augmentation<i32> for AddOne {
        fn name(&self) -> &'static str {
            "AddOne"
        }
        fn validate(&self) -> Result<(), AugmentationError> {
            Ok(())
        }
        fn apply(&self, x: i32, _: &mut AugmentContext<'_, i32>) -> i32 {
            x + 1
        }
    }

    #[derive(Debug)]
    struct Times(i32);
    impl Augmentation<i32> for Times {
        fn name(&self) -> &'static str {
            "Times"
        }
        fn validate(&self) -> Result<(), AugmentationError> {
            Ok(())
        }
        fn apply(&self, x: i32, _: &mut AugmentContext<'_, i32>) -> i32 {
            x * self.0
        }
    }

    #[test]
    fn compose_applies_in_order() {
        let ops: Vec<Box<dyn Augmentation<i32>>> = vec![Box::new(AddOne), Box::new(Times(10))];
        assert_eq!(
            ops.apply(1, &mut AugmentContext::new(&mut StdRng::seed_from_u64(0))),
            20
        );
    }

    #[test]
    fn random_apply_respects_probability_extremes_and_rate() {
        let mut rng = StdRng::seed_from_u64(1);
        let never = RandomApply {
            p: 0.0,
            ops: vec![AddOne],
        };
        let always = RandomApply {
            p: 1.0,
            ops: vec![AddOne],
        };
        assert_eq!(never.apply(0, &mut AugmentContext::new(&mut rng)), 0);
        assert_eq!(always.apply(0, &mut AugmentContext::new(&mut rng)), 1);
        let half = RandomApply {
            p: 0.3,
            ops: vec![AddOne],
        };
        let hits: i32 = (0..10_000)
            .map(|_| half.apply(0, &mut AugmentContext::new(&mut rng)))
            .sum();
        assert!((2700..3300).contains(&hits), "{hits}");
        assert!(
            RandomApply {
                p: 1.5,
                ops: vec![AddOne]
            }
            .validate()
            .is_err()
        );
        assert!(
            RandomApply {
                p: f64::NAN,
                ops: vec![AddOne]
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn one_of_picks_each_and_rejects_empty() {
        let mut rng = StdRng::seed_from_u64(2);
        let op = OneOf {
            ops: vec![Times(2), Times(3)],
        };
        let outs: std::collections::BTreeSet<i32> = (0..100)
            .map(|_| op.apply(1, &mut AugmentContext::new(&mut rng)))
            .collect();
        assert_eq!(outs.into_iter().collect::<Vec<_>>(), vec![2, 3]);
        let empty: OneOf<Times> = OneOf { ops: vec![] };
        assert!(empty.validate().is_err());
    }

    /// Adds a sample drawn from the context's source (0 without one).
    #[derive(Debug)]
    struct AddSample;
    impl Augmentation<i32> for AddSample {
        fn name(&self) -> &'static str {
            "AddSample"
        }
        fn validate(&self) -> Result<(), AugmentationError> {
            Ok(())
        }
        fn apply(&self, x: i32, ctx: &mut AugmentContext<'_, i32>) -> i32 {
            x + ctx.sample().unwrap_or(0)
        }
    }

    struct Hundred;
    impl SampleSource<i32> for Hundred {
        fn random_sample(&self, _: &mut StdRng) -> Option<i32> {
            Some(100)
        }
    }

    #[test]
    fn every_combinator_passes_the_sample_source_on() {
        let boxed = || -> Vec<Box<dyn Augmentation<i32>>> { vec![Box::new(AddSample)] };
        let pipelines: Vec<Box<dyn Augmentation<i32>>> = vec![
            Box::new(AddSample),
            Box::new(boxed()),
            Box::new(Compose { ops: boxed() }),
            Box::new(RandomApply {
                p: 1.0,
                ops: boxed(),
            }),
            Box::new(OneOf { ops: boxed() }),
            Box::new(RandomApply {
                p: 1.0,
                ops: vec![OneOf {
                    ops: vec![Compose { ops: boxed() }],
                }],
            }),
        ];
        for op in &pipelines {
            let mut rng = StdRng::seed_from_u64(3);
            assert_eq!(
                op.apply(1, &mut AugmentContext::with_source(&mut rng, &Hundred)),
                101,
                "{op:?}"
            );
            assert_eq!(op.apply(1, &mut AugmentContext::new(&mut rng)), 1, "{op:?}");
        }
    }

    #[test]
    fn range_checks() {
        assert!(check_range("X", "a", 0.5, 0.0, 1.0).is_ok());
        let e = check_range("X", "a", 2.0, 0.0, 1.0).unwrap_err();
        assert!(
            e.to_string().contains("`X`") && e.to_string().contains("`a`"),
            "{e}"
        );
        assert!(check_interval("X", "s", [0.5, 0.2], 0.0, 1.0).is_err());
        assert!(check_interval("X", "s", [0.2, 0.5], 0.0, 1.0).is_ok());
    }
}
