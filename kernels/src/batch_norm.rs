//! BatchNorm in training mode (batch statistics) as one fused CPU kernel, forward and backward.
//!
//! burn 0.22's `flex` backend computes `batch_norm_train` out of generic tensor ops: a transpose
//! copy of the input to reduce over batch and space, a second one for the variance, then four
//! elementwise passes that each allocate; its backward adds two more transposed copies. On the
//! small CNN's first BatchNorm (`[128, 32, 32, 32]`) that is 29 ms forward + backward (76 ms
//! with glibc's default allocator settings) against PyTorch's 13 ms and these kernels' 12 ms
//! (`ssl bench --workloads ops-smallcnn` and `scripts/bench_ops_torch.py`; BENCHMARKS.md). The
//! kernels here read the input in place, in NCHW order, three times forward (mean, variance,
//! output) and twice backward (sums, input gradient), channel by channel in parallel (so that the
//! later passes over a channel find it in the core's cache), and allocate only their outputs,
//! written without a zeroing pass first. [`batch_norm_relu`] folds the ReLU that follows most
//! BatchNorms into the output pass (and its gradient mask into the backward passes): one pass
//! over the activations less each way, and no separate ReLU output kept for the backward.
//! After a convolution that gathers the statistics itself ([`super::conv_batch_norm()`]),
//! [`FusedBatchNorm::fused_batch_norm_apply`] reads the input once forward, to write the output,
//! image by image (one sequential stream each: 40% fewer samples than channel by channel).
//!
//! The math is the standard one (Ioffe & Szegedy 2015, Algorithm 1 and its gradients), the same
//! as burn's `batch_norm_train` and `batch_norm_train_backward`: with `x̂ = (x - mean) / sqrt(var +
//! eps)` over the `m = batch x spatial` values of a channel, `y = gamma x̂ + beta`, and
//! `dx = gamma / sqrt(var + eps) * (dy - mean(dy) - x̂ mean(dy x̂))`.
//!
//! Only float32 tensors on the `flex` device take this path; anything else (another device,
//! another float type) uses burn's own `batch_norm_train`, so results never depend on which path
//! ran beyond float rounding (a test compares the two). (`fused_batch_norm_apply`, which only
//! [`super::conv_batch_norm()`] calls after checking, refuses other float types.)

use super::{contiguous, is_flex, slice, sync_batch_norm, written_output};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::{Bytes, DType};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Fused BatchNorm (training mode) kernels, as a burn backend extension: implemented for `flex`
/// (float32) and for autodiff over it (with the backward below).
#[backend_extension(Flex, Autodiff)]
pub trait FusedBatchNorm: Backend {
    /// Forward: `x` `[batch, channels, ...]`, `gamma` and `beta` `[channels]`. Returns the
    /// normalized output (the shape of `x`; with `relu`, followed by a ReLU in the same pass),
    /// the batch mean and the biased batch variance (`[channels]` each).
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Forward with the batch statistics already known: `mean` and `variance` (biased)
    /// `[channels]` must be those of `x` itself, as the convolution that produced `x` gathers
    /// them ([`super::conv_batch_norm()`]). Returns the output of
    /// [`FusedBatchNorm::fused_batch_norm_train`], in one pass over `x`; the backward is that
    /// one's, which already accounts for the statistics' dependence on `x`.
    ///
    /// # Panics
    /// When a tensor is not float32, or `gamma`, `beta`, `mean` or `variance` is not one value
    /// per channel.
    fn fused_batch_norm_apply(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// Backward: gradients of the loss with respect to `x`, `gamma` and `beta`, given the
    /// output's gradient and the statistics the forward returned.
    fn fused_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Backward of the forward with `relu`: as [`FusedBatchNorm::fused_batch_norm_train_backward`],
    /// the gradient first zeroed where the forward's output is `<= 0` (burn's `relu_backward`).
    /// That output is not read: its sign comes from `x`, `gamma`, `beta` and the statistics
    /// through the forward's own arithmetic (the same float operations, so the same mask bit
    /// for bit), one stream of memory less in both backward passes.
    #[allow(clippy::too_many_arguments)]
    fn fused_batch_norm_relu_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// `[batch, channels, spatial]` sizes of a `[batch, channels, ...]` shape.
fn nc_s(shape: &[usize]) -> (usize, usize, usize) {
    let (n, c) = (shape[0], shape[1]);
    (n, c, shape[2..].iter().product())
}

/// `o = p * (x - m) + r` over one plane (every value of `o` written), then with `relu` zero
/// where that is `<= 0` (NaN kept, as burn's `relu`).
#[inline]
fn plane_affine(o: &mut [MaybeUninit<f32>], x: &[f32], p: f32, m: f32, r: f32, relu: bool) {
    assert_eq!(o.len(), x.len(), "every output value written");
    if relu {
        with_avx2!(
            affine_relu,
            (o: &mut [MaybeUninit<f32>], x: &[f32], p: f32, m: f32, r: f32),
            for (o, &xv) in o.iter_mut().zip(x) {
                let v = p * (xv - m) + r;
                o.write(if v <= 0.0 { 0.0 } else { v });
            }
        )
    } else {
        with_avx2!(
            affine_x,
            (o: &mut [MaybeUninit<f32>], x: &[f32], p: f32, m: f32, r: f32),
            for (o, &xv) in o.iter_mut().zip(x) {
                o.write(p * (xv - m) + r);
            }
        )
    }
}

/// Whether the fused forward's ReLU let `x` through: its pre-ReLU output `p * (x - m) + r`
/// (exactly [`plane_affine`]'s arithmetic, so the same decision bit for bit) is not `<= 0`
/// (burn's `relu_backward`, which keeps NaN).
#[inline(always)]
fn relu_passes(x: f32, (p, r): (f32, f32), m: f32) -> bool {
    let v = p * (x - m) + r;
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    !(v <= 0.0)
}

/// `o = p * (x - m) + q * y + r` over one plane (every value of `o` written); with `relu`
/// (the forward's scale and shift), `y` is first zeroed where the forward's ReLU blocked `x`
/// ([`relu_passes`]).
#[inline]
#[allow(clippy::too_many_arguments)]
fn plane_affine_xy(
    o: &mut [MaybeUninit<f32>],
    x: &[f32],
    y: &[f32],
    relu: Option<(f32, f32)>,
    p: f32,
    m: f32,
    q: f32,
    r: f32,
) {
    assert!(
        x.len() == o.len() && y.len() == o.len(),
        "every output value written"
    );
    match relu {
        Some(forward) => with_avx2!(
            affine_xy_relu,
            (o: &mut [MaybeUninit<f32>], x: &[f32], y: &[f32], forward: (f32, f32), p: f32, m: f32, q: f32, r: f32),
            for ((o, &xv), &yv) in o.iter_mut().zip(x).zip(y) {
                let yv = if relu_passes(xv, forward, m) { yv } else { 0.0 };
                o.write(p * (xv - m) + q * yv + r);
            }
        ),
        None => with_avx2!(
            affine_xy,
            (o: &mut [MaybeUninit<f32>], x: &[f32], y: &[f32], p: f32, m: f32, q: f32, r: f32),
            for ((o, &xv), &yv) in o.iter_mut().zip(x).zip(y) {
                o.write(p * (xv - m) + q * yv + r);
            }
        ),
    }
}

/// Writes the `(sample, channel)` planes of an output `[n, c, s]` from parallel tasks that each
/// own one channel (its planes are interleaved with the other channels', so safe slices cannot
/// split them).
struct PlaneWriter<'a> {
    ptr: *mut MaybeUninit<f32>,
    len: usize,
    _output: std::marker::PhantomData<&'a mut [MaybeUninit<f32>]>,
}

// SAFETY: tasks reach the buffer only through `plane`, whose contract keeps their slices apart.
unsafe impl Sync for PlaneWriter<'_> {}

impl<'a> PlaneWriter<'a> {
    fn new(out: &'a mut [MaybeUninit<f32>]) -> Self {
        Self {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            _output: std::marker::PhantomData,
        }
    }

    /// The `s` values from `start`.
    ///
    /// # Safety
    /// No two slices obtained from one writer overlap while both are in use (here: each task
    /// owns one channel and takes each of its planes once).
    #[allow(clippy::mut_from_ref)]
    unsafe fn plane(&self, start: usize, s: usize) -> &'a mut [MaybeUninit<f32>] {
        assert!(start + s <= self.len, "plane inside the output");
        // SAFETY: inside the buffer (asserted), borrowed for 'a; no overlap by the contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), s) }
    }
}

/// An output `[n, c, s]` written channel by channel, in parallel over channels: `fill(ch,
/// planes)` gets channel `ch`'s `n` output planes (`s` values each, in sample order), must
/// write every value of them, and returns the channel's result. Returns the output and the
/// results in channel order. The one place that hands out the interleaved planes.
fn by_channel<T: Send>(
    (n, c, s): (usize, usize, usize),
    fill: impl Fn(usize, Vec<&mut [MaybeUninit<f32>]>) -> T + Sync,
) -> (Vec<f32>, Vec<T>) {
    let mut results = Vec::new();
    let out = written_output(n * c * s, |out| {
        let writer = PlaneWriter::new(out);
        results = (0..c)
            .into_par_iter()
            .map(|ch| {
                // SAFETY: this task owns channel `ch` and takes each of its planes once.
                let planes = (0..n)
                    .map(|b| unsafe { writer.plane((b * c + ch) * s, s) })
                    .collect();
                fill(ch, planes)
            })
            .collect();
    });
    (out, results)
}

/// `out = bx[ch] * (x - center[ch]) + by[ch] * y + k[ch]` over `[batch, c]` rows (`[batch,
/// features]`, the heads' BatchNorm: the channel is the position in the row), every value of
/// `out` written; `y` optional (`by` empty), in parallel over rows. Centering first keeps full
/// precision when a channel's mean is large against its spread. With `relu` (and no `y`), a
/// value `<= 0` is written as 0 (NaN kept, as burn's `relu`).
///
/// # Panics
/// When `out`, `x` and `y` differ in length or are not whole rows, or a per-channel slice is
/// not `c` long (then some output would stay unwritten).
#[allow(clippy::too_many_arguments)]
fn affine_rows(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    y: Option<&[f32]>,
    c: usize,
    (bx, center): (&[f32], &[f32]),
    by: &[f32],
    k: &[f32],
    relu: bool,
) {
    let y = y.unwrap_or(x);
    let with_y = !by.is_empty();
    assert!(out.len() == x.len() && y.len() == x.len() && x.len().is_multiple_of(c.max(1)));
    assert!(bx.len() == c && center.len() == c && k.len() == c && (!with_y || by.len() == c));
    out.par_chunks_mut(c.max(1))
        .zip(x.par_chunks(c.max(1)).zip(y.par_chunks(c.max(1))))
        .for_each(|(o, (xi, yi))| {
            if with_y {
                for (((((o, &xv), &yv), (&p, &q)), &r), &m) in o
                    .iter_mut()
                    .zip(xi)
                    .zip(yi)
                    .zip(bx.iter().zip(by))
                    .zip(k)
                    .zip(center)
                {
                    o.write(p * (xv - m) + q * yv + r);
                }
            } else {
                for ((((o, &xv), &p), &r), &m) in o.iter_mut().zip(xi).zip(bx).zip(k).zip(center) {
                    let v = p * (xv - m) + r;
                    o.write(if relu && v <= 0.0 { 0.0 } else { v });
                }
            }
        });
}

fn new_tensor(values: Vec<f32>, shape: burn::tensor::Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// `(sum of a(i), sum of b(i))` over `0..len` in 16 float32 lanes (vectorizes: a plain float
/// `sum()` is a serial chain the compiler may not reorder), returned as f64. A lane sums
/// `len / 16` values of one plane (64 for a 32x32 map, 784 for a 112x112 one), then the
/// planes add up in f64.
#[inline(always)]
fn lane_sums(len: usize, f: impl Fn(usize) -> (f32, f32)) -> [f64; 2] {
    const L: usize = 16;
    let (mut a, mut b) = ([0.0f32; L], [0.0f32; L]);
    let full = len / L * L;
    for base in (0..full).step_by(L) {
        for k in 0..L {
            let (x, y) = f(base + k);
            a[k] += x;
            b[k] += y;
        }
    }
    let (mut ta, mut tb) = (0.0f64, 0.0f64);
    for i in full..len {
        let (x, y) = f(i);
        ta += x as f64;
        tb += y as f64;
    }
    for k in 0..L {
        ta += a[k] as f64;
        tb += b[k] as f64;
    }
    [ta, tb]
}

/// Features per parallel task of the `[batch, features]` kernels ([`feature_sums`]).
const FEATURE_BLOCK: usize = 64;

/// Per feature of `[n, c]` rows (`[batch, features]`, the heads' BatchNorm): the f64 sums, in
/// row order, of the two float32 terms `term(index, feature)` (`index = row * c + feature`),
/// the features in parallel blocks of [`FEATURE_BLOCK`], each block walking the rows (one
/// contiguous run of the block's features per row, vectorized across the features).
fn feature_sums(
    n: usize,
    c: usize,
    term: impl Fn(usize, usize) -> (f32, f32) + Sync,
) -> Vec<[f64; 2]> {
    #[inline(always)]
    fn block<F: Fn(usize, usize) -> (f32, f32)>(
        n: usize,
        c: usize,
        features: std::ops::Range<usize>,
        term: &F,
    ) -> Vec<[f64; 2]> {
        let width = features.len();
        assert!(width <= FEATURE_BLOCK);
        let (mut a, mut b) = ([0.0f64; FEATURE_BLOCK], [0.0f64; FEATURE_BLOCK]);
        for row in 0..n {
            let base = row * c + features.start;
            for j in 0..width {
                let (x, y) = term(base + j, features.start + j);
                a[j] += x as f64;
                b[j] += y as f64;
            }
        }
        (0..width).map(|j| [a[j], b[j]]).collect()
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_avx2<F: Fn(usize, usize) -> (f32, f32)>(
        n: usize,
        c: usize,
        features: std::ops::Range<usize>,
        term: &F,
    ) -> Vec<[f64; 2]> {
        block(n, c, features, term)
    }
    (0..c.div_ceil(FEATURE_BLOCK))
        .into_par_iter()
        .flat_map_iter(|i| {
            let features = i * FEATURE_BLOCK..((i + 1) * FEATURE_BLOCK).min(c);
            #[cfg(target_arch = "x86_64")]
            if super::has_avx2() {
                // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                return unsafe { block_avx2(n, c, features, &term) };
            }
            block(n, c, features, &term)
        })
        .collect()
}

/// `(sum, 0)` of one plane in f64 (see [`lane_sums`]).
pub(super) fn plane_sum(plane: &[f32]) -> [f64; 2] {
    with_avx2!(
        plane_sum,
        (plane: &[f32]) -> [f64; 2],
        lane_sums(plane.len(), |i| (plane[i], 0.0))
    )
}

/// `(sum of (x - mu)^2, 0)` of one plane in f64.
pub(super) fn plane_squared_deviations(plane: &[f32], mu: f32) -> [f64; 2] {
    with_avx2!(
        squared_deviations,
        (plane: &[f32], mu: f32) -> [f64; 2],
        lane_sums(plane.len(), |i| {
            let d = plane[i] - mu;
            (d * d, 0.0)
        })
    )
}

/// Count, mean and sum of squared deviations from the mean (`m2`) of some float32 values, in
/// f64: a channel's BatchNorm statistics gathered in parts where the values are still in cache
/// (the convolution's blocks of images, [`mod@super::conv2d`]) and merged exactly up to rounding
/// (Chan, Golub & LeVeque 1979, the pairwise update), instead of extra passes over the
/// channel afterwards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Moments {
    /// Number of values.
    pub count: f64,
    /// Their mean.
    pub mean: f64,
    /// Sum of their squared deviations from `mean`.
    pub m2: f64,
}

impl Moments {
    /// No values.
    pub const EMPTY: Self = Self {
        count: 0.0,
        mean: 0.0,
        m2: 0.0,
    };

    /// The moments of `values`, in two passes (the mean, then the squared deviations from it:
    /// no cancellation); meant for values in cache.
    pub fn of(values: &[f32]) -> Self {
        if values.is_empty() {
            return Self::EMPTY;
        }
        let count = values.len() as f64;
        let mean = plane_sum(values)[0] / count;
        // Deviations from the float32 mean `mu`, corrected to the exact one:
        // sum (x - mean)^2 = sum (x - mu)^2 - count (mean - mu)^2.
        let mu = mean as f32;
        let shift = mean - mu as f64;
        let m2 = plane_squared_deviations(values, mu)[0] - count * shift * shift;
        // Rounding can take an all-equal part just below zero; NaN stays NaN.
        let m2 = if m2 < 0.0 { 0.0 } else { m2 };
        Self { count, mean, m2 }
    }

    /// The moments of both parts' values together.
    pub fn merge(self, other: Self) -> Self {
        if other.count == 0.0 {
            return self;
        }
        if self.count == 0.0 {
            return other;
        }
        let count = self.count + other.count;
        let delta = other.mean - self.mean;
        Self {
            count,
            mean: self.mean + delta * other.count / count,
            m2: self.m2 + other.m2 + delta * delta * self.count * other.count / count,
        }
    }

    /// The biased variance (`m2 / count`; 0 for no values).
    pub fn variance(&self) -> f64 {
        if self.count == 0.0 {
            0.0
        } else {
            self.m2 / self.count
        }
    }
}

/// Per feature of `xs` `[n, c]` (`[batch, features]` rows): the mean and the (biased)
/// variance in two passes (mean, then the sum of squared deviations: no cancellation), summed
/// in f64 in row order. Images go channel by channel ([`channel_mean_variance`]).
fn feature_mean_variance(xs: &[f32], n: usize, c: usize) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(xs.len(), n * c, "[batch, features] rows");
    let m = n as f64;
    let sums = feature_sums(n, c, |i, _| (xs[i], 0.0));
    let mean: Vec<f32> = sums.iter().map(|t| (t[0] / m) as f32).collect();
    let sq = feature_sums(n, c, |i, f| {
        let d = xs[i] - mean[f];
        (d * d, 0.0)
    });
    let variance = sq.iter().map(|t| (t[0] / m) as f32).collect();
    (mean, variance)
}

/// The mean and (biased) variance of channel `ch` of `xs` `[n, c, s]`, two passes over its
/// planes (the same sums, in the same order, as [`mean_and_variance`]).
fn channel_mean_variance(xs: &[f32], (n, c, s): (usize, usize, usize), ch: usize) -> (f32, f32) {
    let m = (n * s) as f64;
    let planes = || (0..n).map(|b| &xs[(b * c + ch) * s..][..s]);
    let mut sum = 0.0f64;
    for plane in planes() {
        sum += plane_sum(plane)[0];
    }
    let mean = (sum / m) as f32;
    let mut sq = 0.0f64;
    for plane in planes() {
        sq += plane_squared_deviations(plane, mean)[0];
    }
    (mean, (sq / m) as f32)
}

impl FusedBatchNorm for Flex {
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if x.dtype() != DType::F32 || gamma.dtype() != DType::F32 || beta.dtype() != DType::F32 {
            let r = <Flex as ModuleOps<Flex>>::batch_norm_train(x, gamma, beta, epsilon);
            let output = if relu {
                <Flex as ActivationOps<Flex>>::relu(r.output)
            } else {
                r.output
            };
            return (output, r.mean, r.variance);
        }
        let shape = x.layout().shape().clone();
        let (n, c, s) = nc_s(&shape);
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        let (xs, gs, bs) = (slice(&x), slice(&gamma), slice(&beta));
        assert!(
            gs.len() == c && bs.len() == c,
            "fused BatchNorm: gamma and beta need {c} values (one per channel)"
        );
        if let Some(exchange) = sync_batch_norm::active() {
            // SyncBN: this rank's statistics first, then the global batch's, then one pass.
            let (mean, variance): (Vec<f32>, Vec<f32>) = if s == 1 {
                feature_mean_variance(xs, n, c)
            } else {
                (0..c)
                    .into_par_iter()
                    .map(|ch| channel_mean_variance(xs, (n, c, s), ch))
                    .unzip()
            };
            let (mean, variance) =
                sync_batch_norm::global_moments(&*exchange, n * s, &mean, &variance);
            let per_channel = burn::tensor::Shape::new([c]);
            let (mean, variance) = (
                new_tensor(mean, per_channel.clone()),
                new_tensor(variance, per_channel),
            );
            let out = Self::fused_batch_norm_apply(
                x,
                gamma,
                beta,
                mean.clone(),
                variance.clone(),
                epsilon,
                relu,
            );
            return (out, mean, variance);
        }
        let (out, mean, variance) = if s == 1 {
            // `[batch, features]`: statistics over rows, then one affine pass.
            let (mean, variance) = feature_mean_variance(xs, n, c);
            let scale: Vec<f32> = (0..c)
                .map(|ch| gs[ch] / ((variance[ch] as f64 + epsilon).sqrt()) as f32)
                .collect();
            let out = written_output(xs.len(), |out| {
                affine_rows(out, xs, None, c, (&scale, &mean), &[], bs, relu)
            });
            (out, mean, variance)
        } else {
            // Channel by channel: statistics, then the channel's output planes while its
            // values are still in the core's cache.
            let (out, stats) = by_channel((n, c, s), |ch, planes| {
                let (mean, variance) = channel_mean_variance(xs, (n, c, s), ch);
                let scale = gs[ch] / ((variance as f64 + epsilon).sqrt()) as f32;
                for (b, o) in planes.into_iter().enumerate() {
                    let start = (b * c + ch) * s;
                    plane_affine(o, &xs[start..start + s], scale, mean, bs[ch], relu);
                }
                (mean, variance)
            });
            let (mean, variance) = stats.into_iter().unzip();
            (out, mean, variance)
        };
        let per_channel = burn::tensor::Shape::new([c]);
        (
            new_tensor(out, shape),
            new_tensor(mean, per_channel.clone()),
            new_tensor(variance, per_channel),
        )
    }

    fn fused_batch_norm_apply(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self> {
        let tensors = [&x, &gamma, &beta, &mean, &variance];
        assert!(
            tensors.iter().all(|t| t.dtype() == DType::F32),
            "fused BatchNorm with known statistics: float32 tensors only"
        );
        let shape = x.layout().shape().clone();
        let (n, c, s) = nc_s(&shape);
        let [x, gamma, beta, mean, variance] = [x, gamma, beta, mean, variance].map(contiguous);
        let (xs, gs, bs) = (slice(&x), slice(&gamma), slice(&beta));
        let (ms, vs) = (slice(&mean), slice(&variance));
        assert!(
            [gs, bs, ms, vs].iter().all(|v| v.len() == c),
            "fused BatchNorm: gamma, beta, mean and variance need {c} values (one per channel)"
        );
        let scale: Vec<f32> = (0..c)
            .map(|ch| gs[ch] / ((vs[ch] as f64 + epsilon).sqrt()) as f32)
            .collect();
        // With the statistics known, image by image: one sequential stream per image.
        let out = written_output(n * c * s, |out| {
            if out.is_empty() {
                return;
            }
            out.par_chunks_mut(c * s)
                .zip(xs.par_chunks(c * s))
                .for_each(|(o, x)| {
                    for (ch, (o, x)) in o.chunks_exact_mut(s).zip(x.chunks_exact(s)).enumerate() {
                        plane_affine(o, x, scale[ch], ms[ch], bs[ch], relu);
                    }
                });
        });
        new_tensor(out, shape)
    }

    fn fused_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        backward_flex(x, gamma, mean, variance, epsilon, output_grad, None)
    }

    fn fused_batch_norm_relu_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        backward_flex(x, gamma, mean, variance, epsilon, output_grad, Some(beta))
    }
}

/// The fused backward on `flex` (see [`FusedBatchNorm::fused_batch_norm_train_backward`]);
/// `relu_beta`: the forward's `beta` when it ended in a ReLU (whose mask is recomputed, see
/// [`FusedBatchNorm::fused_batch_norm_relu_train_backward`]).
#[allow(clippy::too_many_arguments)]
fn backward_flex(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
    output_grad: FlexTensor,
    relu_beta: Option<FlexTensor>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    {
        if [&x, &gamma, &mean, &variance, &output_grad]
            .iter()
            .any(|t| t.dtype() != DType::F32)
            || relu_beta.as_ref().is_some_and(|b| b.dtype() != DType::F32)
        {
            let output_grad = match relu_beta {
                Some(beta) => {
                    // The forward's output again (burn's ops on these float types; the batch
                    // statistics of `x` are the saved ones).
                    let (output, _, _) = <Flex as FusedBatchNorm>::fused_batch_norm_train(
                        x.clone(),
                        gamma.clone(),
                        beta,
                        epsilon,
                        true,
                    );
                    <Flex as ActivationOps<Flex>>::relu_backward(output, output_grad)
                }
                None => output_grad,
            };
            let r = <Flex as ModuleOps<Flex>>::batch_norm_train_backward(
                x,
                gamma,
                mean,
                variance,
                epsilon,
                output_grad,
            );
            return (r.x_grad, r.gamma_grad, r.beta_grad);
        }
        let shape = x.layout().shape().clone();
        let (n, c, s) = nc_s(&shape);
        let (x, gamma, mean, variance, dy) = (
            contiguous(x),
            contiguous(gamma),
            contiguous(mean),
            contiguous(variance),
            contiguous(output_grad),
        );
        let relu_beta = relu_beta.map(contiguous);
        let betas = relu_beta.as_ref().map(slice);
        let (xs, gs, ms, vs, dys) = (
            slice(&x),
            slice(&gamma),
            slice(&mean),
            slice(&variance),
            slice(&dy),
        );
        assert!(
            [gs.len(), ms.len(), vs.len()] == [c; 3],
            "fused BatchNorm backward: gamma, mean and variance need {c} values"
        );
        assert!(
            dys.len() == xs.len() && betas.is_none_or(|b| b.len() == c),
            "fused BatchNorm backward: the output gradient needs the input's shape (and beta \
             {c} values)"
        );
        let inv_std: Vec<f32> = vs
            .iter()
            .map(|&v| 1.0 / ((v as f64 + epsilon).sqrt()) as f32)
            .collect();
        // With a ReLU, its forward scale and shift per channel (the forward's own expressions).
        let relu: Option<Vec<(f32, f32)>> = betas.map(|betas| {
            (0..c)
                .map(|ch| {
                    (
                        gs[ch] / ((vs[ch] as f64 + epsilon).sqrt()) as f32,
                        betas[ch],
                    )
                })
                .collect()
        });
        let relu = relu.as_deref();
        // Under SyncBN the sums and the count are the global batch's ([`sync_batch_norm`]);
        // gamma's and beta's gradients stay this rank's own sums.
        let exchange = sync_batch_norm::active();
        let m = (n * s) as f64;
        // sum(dy) and sum(dy * x̂) over one plane (`g`, the plane of dy; with `relu`, first
        // zeroed where the forward's ReLU blocked).
        let gradient_sums = |start: usize, ch: usize, g: &[f32], relu: Option<(f32, f32)>| {
            let (mu, is) = (ms[ch], inv_std[ch]);
            let v = &xs[start..start + s];
            match relu {
                Some(forward) => with_avx2!(
                    plane_gradient_sums_relu,
                    (g: &[f32], v: &[f32], forward: (f32, f32), mu: f32, is: f32) -> [f64; 2],
                    {
                        // Equal lengths, visible to the compiler: no bounds test per value.
                        let v = &v[..g.len()];
                        lane_sums(g.len(), |i| {
                            // Both loads first: a select, not a branch, so it vectorizes.
                            let (gv, xv) = (g[i], v[i]);
                            let gi = if relu_passes(xv, forward, mu) { gv } else { 0.0 };
                            (gi, gi * (xv - mu) * is)
                        })
                    }
                ),
                None => with_avx2!(
                    plane_gradient_sums,
                    (g: &[f32], v: &[f32], mu: f32, is: f32) -> [f64; 2],
                    {
                        let v = &v[..g.len()];
                        lane_sums(g.len(), |i| (g[i], g[i] * (v[i] - mu) * is))
                    }
                ),
            }
        };
        // dx = gamma inv_std (dy - mean(dy) - x̂ mean(dy x̂)) = a dy + b (x - mean) + k per
        // channel, from the channel's two sums.
        let coefficients_over = |ch: usize, sums: [f64; 2], m: f64| {
            let (mean_dy, mean_dy_xhat) = ((sums[0] / m) as f32, (sums[1] / m) as f32);
            let is = inv_std[ch];
            let a = gs[ch] * is;
            (a, -a * is * mean_dy_xhat, -a * mean_dy)
        };
        let coefficients = |ch: usize, sums: [f64; 2]| coefficients_over(ch, sums, m);
        let (dx, sums) = if s == 1 {
            // `[batch, features]`: the ReLU's gradient first (rows in parallel), then the
            // sums across rows.
            let masked: Option<Vec<f32>> = relu.map(|forward| {
                written_output(dys.len(), |masked| {
                    masked
                        .par_chunks_mut(c)
                        .zip(dys.par_chunks(c).zip(xs.par_chunks(c)))
                        .for_each(|(o, (g, x))| {
                            for (ch, o) in o.iter_mut().enumerate() {
                                let pass = relu_passes(x[ch], forward[ch], ms[ch]);
                                o.write(if pass { g[ch] } else { 0.0 });
                            }
                        })
                })
            });
            let dys = masked.as_deref().unwrap_or(dys);
            let sums = feature_sums(n, c, |i, ch| {
                let g = dys[i];
                (g, g * (xs[i] - ms[ch]) * inv_std[ch])
            });
            let (mut a, mut b, mut k) = (vec![0.0f32; c], vec![0.0f32; c], vec![0.0f32; c]);
            match &exchange {
                Some(exchange) => {
                    let (global, m) =
                        sync_batch_norm::global_gradient_sums(&**exchange, n * s, &sums);
                    for ch in 0..c {
                        (a[ch], b[ch], k[ch]) = coefficients_over(ch, global[ch], m);
                    }
                }
                None => {
                    for ch in 0..c {
                        (a[ch], b[ch], k[ch]) = coefficients(ch, sums[ch]);
                    }
                }
            }
            let dx = written_output(xs.len(), |dx| {
                affine_rows(dx, xs, Some(dys), c, (&b, ms), &a, &k, false)
            });
            (dx, sums)
        } else {
            let channel_sums = |ch: usize| {
                let relu = relu.map(|forward| forward[ch]);
                let mut acc = [0.0f64; 2];
                for b in 0..n {
                    let start = (b * c + ch) * s;
                    let part = gradient_sums(start, ch, &dys[start..start + s], relu);
                    acc[0] += part[0];
                    acc[1] += part[1];
                }
                acc
            };
            // Under SyncBN every channel's sums first, then the global ones.
            // (this rank's sums, the global ones, the global count) per channel.
            type Synced = (Vec<[f64; 2]>, Vec<[f64; 2]>, f64);
            let synced: Option<Synced> = exchange.map(|exchange| {
                let local: Vec<[f64; 2]> = (0..c).into_par_iter().map(channel_sums).collect();
                let (global, m) = sync_batch_norm::global_gradient_sums(&*exchange, n * s, &local);
                (local, global, m)
            });
            // Channel by channel, as in the forward pass.
            by_channel((n, c, s), |ch, planes| {
                let relu = relu.map(|forward| forward[ch]);
                let (acc, (a, bx, k)) = match &synced {
                    Some((local, global, m)) => (local[ch], coefficients_over(ch, global[ch], *m)),
                    None => {
                        let acc = channel_sums(ch);
                        (acc, coefficients(ch, acc))
                    }
                };
                for (b, o) in planes.into_iter().enumerate() {
                    let start = (b * c + ch) * s;
                    let (x, g) = (&xs[start..start + s], &dys[start..start + s]);
                    plane_affine_xy(o, x, g, relu, bx, ms[ch], a, k);
                }
                acc
            })
        };
        let beta_grad: Vec<f32> = sums.iter().map(|a| a[0] as f32).collect();
        let gamma_grad: Vec<f32> = sums.iter().map(|a| a[1] as f32).collect();
        let per_channel = burn::tensor::Shape::new([c]);
        (
            new_tensor(dx, shape),
            new_tensor(gamma_grad, per_channel.clone()),
            new_tensor(beta_grad, per_channel),
        )
    }
}

/// The autodiff step of the fused BatchNorm (with or without known statistics): its backward
/// kernels, the ReLU mask included when the forward ended in one.
#[derive(Debug)]
struct FusedBatchNormBackward;

impl<B: Backend + FusedBatchNorm> Backward<B, 3> for FusedBatchNormBackward {
    // Input, gamma, batch mean, batch variance, epsilon, and beta when the forward ended in a
    // ReLU (whose mask the backward recomputes from the input).
    type State = (
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        f64,
        Option<B::FloatTensorPrimitive>,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, mean, variance, epsilon, relu_beta) = ops.state;
        let (x_grad, gamma_grad, beta_grad) = match relu_beta {
            Some(beta) => B::fused_batch_norm_relu_train_backward(
                x, gamma, beta, mean, variance, epsilon, grad,
            ),
            None => B::fused_batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad),
        };
        if let Some(node) = node_x {
            grads.register::<B>(node.id, x_grad);
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, gamma_grad);
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, beta_grad);
        }
    }
}

/// One autodiff step of the fused BatchNorm: `forward` runs on the inner backend's `[x, gamma,
/// beta]` and returns the output with the batch mean and variance, which (with `beta`, when
/// the forward ended in a ReLU) the backward ([`FusedBatchNormBackward`]) keeps. Returns the
/// tracked output and the inner mean and variance.
#[allow(clippy::type_complexity)]
fn fused_autodiff<B: Backend + FusedBatchNorm, C: CheckpointStrategy>(
    [x, gamma, beta]: [FloatTensor<Autodiff<B, C>>; 3],
    epsilon: f64,
    relu: bool,
    forward: impl FnOnce(
        [B::FloatTensorPrimitive; 3],
    ) -> (
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
    ),
) -> (
    FloatTensor<Autodiff<B, C>>,
    B::FloatTensorPrimitive,
    B::FloatTensorPrimitive,
) {
    let nodes = [x.node(), gamma.node(), beta.node()];
    let (x, gamma, beta) = (
        x.into_primitive(),
        gamma.into_primitive(),
        beta.into_primitive(),
    );
    match FusedBatchNormBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let relu_beta = relu.then(|| beta.clone());
            let (output, mean, variance) = forward([x.clone(), gamma.clone(), beta]);
            let state = (x, gamma, mean.clone(), variance.clone(), epsilon, relu_beta);
            (prep.finish(state, output), mean, variance)
        }
        OpsKind::UnTracked(prep) => {
            let (output, mean, variance) = forward([x, gamma, beta]);
            (prep.finish(output), mean, variance)
        }
    }
}

impl<B: Backend + FusedBatchNorm, C: CheckpointStrategy> FusedBatchNorm for Autodiff<B, C> {
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (output, mean, variance) =
            fused_autodiff::<B, C>([x, gamma, beta], epsilon, relu, |[x, gamma, beta]| {
                B::fused_batch_norm_train(x, gamma, beta, epsilon, relu)
            });
        let constant = <Self as AutodiffBackend>::from_inner;
        (output, constant(mean), constant(variance))
    }

    fn fused_batch_norm_apply(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self> {
        // The statistics are `x`'s own: the backward differentiates through them already, so
        // they enter as constants.
        let (mean, variance) = (
            <Self as AutodiffBackend>::inner(mean),
            <Self as AutodiffBackend>::inner(variance),
        );
        let (output, _, _) =
            fused_autodiff::<B, C>([x, gamma, beta], epsilon, relu, |[x, gamma, beta]| {
                let output = B::fused_batch_norm_apply(
                    x,
                    gamma,
                    beta,
                    mean.clone(),
                    variance.clone(),
                    epsilon,
                    relu,
                );
                (output, mean, variance)
            });
        output
    }

    fn fused_batch_norm_train_backward(
        _x: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _mean: FloatTensor<Self>,
        _variance: FloatTensor<Self>,
        _epsilon: f64,
        _output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the fused BatchNorm backward is not itself differentiated")
    }

    fn fused_batch_norm_relu_train_backward(
        _x: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _beta: FloatTensor<Self>,
        _mean: FloatTensor<Self>,
        _variance: FloatTensor<Self>,
        _epsilon: f64,
        _output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the fused BatchNorm backward is not itself differentiated")
    }
}

/// BatchNorm with batch statistics, `input` `[batch, channels, ...]`, `gamma` and `beta`
/// `[channels]`: the output (shape of `input`), the batch mean and the biased batch variance
/// (`[channels]`, detached). The fused kernel on float32 `flex` tensors, burn's
/// `batch_norm_train` otherwise; the same values up to float rounding.
pub fn batch_norm_train<const D: usize>(
    input: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    batch_norm_train_then(input, gamma, beta, epsilon, false)
}

/// [`batch_norm_train`], followed by a ReLU when `relu` (in the same pass over the values on
/// the fused path, forward and backward).
fn batch_norm_train_then<const D: usize>(
    input: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    relu: bool,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    let channels = input.dims()[1];
    if !is_flex(&input.device())
        || input.dtype() != DType::F32
        || gamma.dtype() != DType::F32
        || beta.dtype() != DType::F32
        || gamma.dims() != [channels]
        || beta.dims() != [channels]
    {
        // burn's path, which also reports mismatched shapes.
        let r = burn::tensor::module::batch_norm_train(input, gamma, beta, epsilon);
        let output = if relu {
            burn::tensor::activation::relu(r.output)
        } else {
            r.output
        };
        return (output, r.mean.detach(), r.variance.detach());
    }
    let (output, mean, variance) = <Dispatch as FusedBatchNorm>::fused_batch_norm_train(
        input.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
        relu,
    );
    (
        Tensor::from_dispatch(output),
        Tensor::<1>::from_dispatch(mean).detach(),
        Tensor::<1>::from_dispatch(variance).detach(),
    )
}

/// [`BatchNorm::forward`] with the fused kernel: in training mode on an autodiff device, batch
/// statistics (and the running statistics updated with `momentum`, as burn does); otherwise
/// the running statistics, as burn's inference path (on `flex` float32 outside autodiff in
/// one parallel pass of our kernel). `input` `[batch, channels, ...]`.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, input: Tensor<D>) -> Tensor<D> {
    batch_norm_then(bn, input, false)
}

/// `relu(batch_norm(bn, input))` ([`batch_norm`], then burn's `relu`: zero where `<= 0`), with
/// the ReLU fused into the BatchNorm kernel's passes in training mode on `flex` (one pass less
/// over the activations forward and backward; the gradient is zero where the output is `<= 0`,
/// as burn's `relu_backward`). `input` `[batch, channels, ...]`.
pub fn batch_norm_relu<const D: usize>(bn: &BatchNorm, input: Tensor<D>) -> Tensor<D> {
    batch_norm_then(bn, input, true)
}

pub(super) fn batch_norm_then<const D: usize>(
    bn: &BatchNorm,
    input: Tensor<D>,
    relu: bool,
) -> Tensor<D> {
    let device = input.device();
    if !device.is_autodiff() && is_flex(&device) && input.dtype() == DType::F32 {
        // Inference (evaluation, embedding) on `flex`: the running statistics in one parallel
        // pass, where burn's `BatchNorm::forward` makes four serial elementwise passes.
        let output = <Dispatch as FusedBatchNorm>::fused_batch_norm_apply(
            input.into_dispatch(),
            bn.gamma.val().into_dispatch(),
            bn.beta.val().into_dispatch(),
            bn.running_mean
                .value_sync()
                .to_device(&device)
                .into_dispatch(),
            bn.running_var
                .value_sync()
                .to_device(&device)
                .into_dispatch(),
            bn.epsilon,
            relu,
        );
        return Tensor::from_dispatch(output);
    }
    if !(device.is_autodiff() && bn.training.is_enabled()) {
        let output = bn.forward(input);
        return if relu {
            burn::tensor::activation::relu(output)
        } else {
            output
        };
    }
    let (output, mean, variance) =
        batch_norm_train_then(input, bn.gamma.val(), bn.beta.val(), bn.epsilon, relu);
    update_running_statistics(bn, mean, variance);
    output
}

/// Moves `bn`'s running statistics toward a batch's (`mean` and biased `variance`,
/// `[channels]`) by `momentum`, as burn's `BatchNorm::forward` does in training.
fn update_running_statistics(bn: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>) {
    let device = mean.device();
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    bn.running_mean.update(
        running_mean
            .mul_scalar(1.0 - bn.momentum)
            .add(mean.mul_scalar(bn.momentum))
            .detach(),
    );
    bn.running_var.update(
        running_var
            .mul_scalar(1.0 - bn.momentum)
            .add(variance.mul_scalar(bn.momentum))
            .detach(),
    );
}

/// [`batch_norm`] (with `relu`, [`batch_norm_relu`]) in training mode, given `input`'s batch
/// statistics (`mean` and biased `variance`, `[channels]`, gathered by the convolution that
/// produced it): one pass over `input` instead of three. `input` `[batch, channels, height,
/// width]`, float32 on `flex` (autodiff), with one statistic per channel; callers check.
pub(super) fn batch_norm_with_statistics(
    bn: &BatchNorm,
    input: Tensor<4>,
    mean: Tensor<1>,
    variance: Tensor<1>,
    relu: bool,
) -> Tensor<4> {
    let (mean, variance) = match sync_batch_norm::active() {
        Some(exchange) => {
            // SyncBN: the convolution gathered this rank's statistics; the global batch's.
            let [n, _, h, w] = input.dims();
            let device = mean.device();
            let host = |t: Tensor<1>| -> Vec<f32> {
                t.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("float32 statistics")
            };
            let (m, v) = sync_batch_norm::global_moments(
                &*exchange,
                n * h * w,
                &host(mean),
                &host(variance),
            );
            (
                Tensor::<1>::from_floats(m.as_slice(), &device),
                Tensor::<1>::from_floats(v.as_slice(), &device),
            )
        }
        None => (mean, variance),
    };
    let output = <Dispatch as FusedBatchNorm>::fused_batch_norm_apply(
        input.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        mean.clone().into_dispatch(),
        variance.clone().into_dispatch(),
        bn.epsilon,
        relu,
    );
    update_running_statistics(bn, mean, variance);
    Tensor::from_dispatch(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// Output, statistics and all three gradients of the fused kernel against burn's
    /// `batch_norm_train` on the same input, with a random upstream gradient (a weighted sum).
    /// `shifted`: ours runs on the input + 1000 (far from zero: the variance must not cancel),
    /// burn's on the input itself, which gives the same output, variance and gradients and a
    /// mean 1000 lower (burn's float32 sums, accurate near zero, would not be a reference at
    /// 1000: their rounding alone moved its gamma gradient by 3e-3).
    fn compare<const D: usize>(input: Tensor<D>, shifted: bool) {
        compare_then(input, shifted, false)
    }

    /// [`compare`], the output through a ReLU (fused on our side, burn's `relu` on burn's).
    fn compare_then<const D: usize>(input: Tensor<D>, shifted: bool, relu: bool) {
        let device = Device::flex().autodiff();
        let channels = input.dims()[1];
        let offset = if shifted { 1000.0 } else { 0.0 };
        let weights = Tensor::<D>::random(input.shape(), Distribution::Normal(0.0, 1.0), &device);
        let gamma0 = Tensor::<1>::random([channels], Distribution::Uniform(0.5, 1.5), &device);
        let beta0 = Tensor::<1>::random([channels], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let x = input.clone().detach().require_grad();
            let gamma = gamma0.clone().detach().require_grad();
            let beta = beta0.clone().detach().require_grad();
            let (out, mean, var) = if fused {
                let (out, mean, var) = batch_norm_train_then(
                    x.clone().add_scalar(offset),
                    gamma.clone(),
                    beta.clone(),
                    1e-5,
                    relu,
                );
                (out, mean.sub_scalar(offset), var)
            } else {
                let r = burn::tensor::module::batch_norm_train(
                    x.clone(),
                    gamma.clone(),
                    beta.clone(),
                    1e-5,
                );
                let out = if relu {
                    burn::tensor::activation::relu(r.output)
                } else {
                    r.output
                };
                (out, r.mean, r.variance)
            };
            let grads = (out.clone() * weights.clone()).sum().backward();
            (
                out.into_data(),
                mean.into_data(),
                var.into_data(),
                x.grad(&grads).unwrap().into_data(),
                gamma.grad(&grads).unwrap().into_data(),
                beta.grad(&grads).unwrap().into_data(),
            )
        };
        let (a, b) = (run(true), run(false));
        let tol = Tolerance::<f32>::absolute(2e-3).set_relative(2e-3);
        a.0.assert_approx_eq::<f32>(&b.0, tol);
        a.1.assert_approx_eq::<f32>(&b.1, tol);
        a.2.assert_approx_eq::<f32>(&b.2, tol);
        a.3.assert_approx_eq::<f32>(&b.3, tol);
        a.4.assert_approx_eq::<f32>(&b.4, tol);
        a.5.assert_approx_eq::<f32>(&b.5, tol);
    }

    #[test]
    fn fused_matches_burn_on_images() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([5, 3, 7, 6], Distribution::Normal(0.5, 2.0), &device);
        compare(x, false);
    }

    #[test]
    fn fused_matches_burn_on_features_and_far_from_zero() {
        let device = Device::flex().autodiff();
        // `[batch, features]` (the projector's BatchNorm), more features than a channel block.
        let x = Tensor::<2>::random([9, 150], Distribution::Normal(0.0, 1.0), &device);
        compare(x, false);
        let x = Tensor::<3>::random([4, 5, 33], Distribution::Normal(0.0, 1.0), &device);
        compare(x, true);
    }

    #[test]
    fn fused_relu_matches_burn_batch_norm_then_relu() {
        let device = Device::flex().autodiff();
        // Images (planes, the channel-by-channel path) and `[batch, features]` (rows); beta
        // and the spread put about half the values below zero.
        let x = Tensor::<4>::random([5, 3, 7, 6], Distribution::Normal(0.5, 2.0), &device);
        compare_then(x, false, true);
        let x = Tensor::<2>::random([9, 150], Distribution::Normal(0.0, 1.0), &device);
        compare_then(x, false, true);
        // Not shifted: at 1000 the float32 rounding of ours and burn's differs by 6e-5, which
        // flips the ReLU of values that close to zero (the shift is tested without the ReLU).
        let x = Tensor::<3>::random([4, 5, 33], Distribution::Normal(0.0, 1.0), &device);
        compare_then(x, false, true);
    }

    #[test]
    fn fused_relu_zeroes_exactly_the_values_at_or_below_zero() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([4, 2, 5, 5], Distribution::Normal(0.0, 1.0), &device);
        let (gamma, beta) = (
            Tensor::<1>::ones([2], &device),
            Tensor::<1>::zeros([2], &device),
        );
        let values = |relu: bool| {
            let (out, _, _) =
                batch_norm_train_then(x.clone(), gamma.clone(), beta.clone(), 1e-5, relu);
            out.into_data().try_to_vec::<f32>().unwrap()
        };
        let (plain, clamped) = (values(false), values(true));
        // NaN stays NaN, as with burn's `relu` (a NaN loss must still be seen).
        let nan = Tensor::<4>::from_data([[[[f32::NAN, 1.0, -1.0]]]], &device);
        let (out, _, _) = batch_norm_train_then(
            nan,
            Tensor::ones([1], &device),
            Tensor::zeros([1], &device),
            1e-5,
            true,
        );
        assert!(out.into_data().try_to_vec::<f32>().unwrap()[0].is_nan());
        let below = plain.iter().filter(|&&v| v <= 0.0).count();
        assert!(
            below > 50 && below < 150,
            "{below} of 200 values at or below zero"
        );
        for (p, c) in plain.iter().zip(&clamped) {
            assert_eq!(*c, if *p <= 0.0 { 0.0 } else { *p });
        }
    }

    #[test]
    fn fused_matches_burn_on_a_transposed_input() {
        let device = Device::flex().autodiff();
        // Not contiguous in memory: the kernel must read it in logical order.
        let x = Tensor::<4>::random([3, 4, 5, 6], Distribution::Normal(0.0, 1.0), &device)
            .swap_dims(1, 3);
        compare(x, false);
    }

    #[test]
    fn moments_merged_from_parts_match_the_whole() {
        // Uneven parts (empty, 1 value, the rest) of values far from zero with a small spread:
        // the merge must keep the variance (the spread's, not the offset's).
        let values: Vec<f32> = (0..1000)
            .map(|i| 5000.0 + ((i * 37 % 101) as f32 - 50.0) * 0.01)
            .collect();
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let variance = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        for cuts in [[0, 0], [0, 1], [1, 500], [333, 334], [999, 1000]] {
            let merged = Moments::of(&values[..cuts[0]])
                .merge(Moments::of(&values[cuts[0]..cuts[1]]))
                .merge(Moments::of(&values[cuts[1]..]));
            assert_eq!(merged.count, n);
            // The float32 lane sums of `plane_sum` round the mean slightly.
            assert!(
                (merged.mean - mean).abs() < 1e-7 * mean,
                "{cuts:?}: {merged:?}"
            );
            assert!(
                (merged.variance() - variance).abs() < 1e-6 * variance,
                "{cuts:?}: {} against {variance}",
                merged.variance()
            );
        }
        assert_eq!(Moments::of(&[]).variance(), 0.0);
        assert_eq!(Moments::of(&[3.0]).variance(), 0.0);
        // A NaN (a diverged step) must show in the statistics, not read as variance 0.
        let poisoned = Moments::of(&[1.0, f32::NAN, 2.0]);
        assert!(poisoned.mean.is_nan() && poisoned.variance().is_nan());
        assert!(poisoned.merge(Moments::of(&[4.0])).variance().is_nan());
    }

    #[test]
    fn module_forward_updates_running_statistics_like_burn() {
        let device = Device::flex().autodiff();
        let ours = burn::nn::BatchNormConfig::new(3).init(&device);
        let theirs = burn::nn::BatchNormConfig::new(3).init(&device);
        let x = Tensor::<4>::random([4, 3, 5, 5], Distribution::Normal(2.0, 3.0), &device);
        let tol = Tolerance::<f32>::absolute(1e-4).set_relative(1e-4);
        for _ in 0..3 {
            batch_norm(&ours, x.clone())
                .into_data()
                .assert_approx_eq::<f32>(&theirs.forward(x.clone()).into_data(), tol);
        }
        ours.running_mean
            .value()
            .into_data()
            .assert_approx_eq::<f32>(&theirs.running_mean.value().into_data(), tol);
        ours.running_var
            .value()
            .into_data()
            .assert_approx_eq::<f32>(&theirs.running_var.value().into_data(), tol);
        // The BYOL target (autodiff device, no gradients): batch statistics and running
        // statistics updated, like burn's module.
        let target_ours = burn::nn::BatchNormConfig::new(3)
            .init(&device)
            .valid()
            .train()
            .no_grad();
        let target_theirs = burn::nn::BatchNormConfig::new(3)
            .init(&device)
            .valid()
            .train()
            .no_grad();
        batch_norm(&target_ours, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&target_theirs.forward(x.clone()).into_data(), tol);
        target_ours
            .running_mean
            .value()
            .into_data()
            .assert_approx_eq::<f32>(&target_theirs.running_mean.value().into_data(), tol);
        // Inference (no autodiff) uses the running statistics, as burn's module does.
        let valid = ours.valid();
        let plain = x.clone().without_autodiff();
        batch_norm(&valid, plain.clone())
            .into_data()
            .assert_approx_eq::<f32>(&theirs.valid().forward(plain.clone()).into_data(), tol);
        batch_norm_relu(&valid, plain.clone())
            .into_data()
            .assert_approx_eq::<f32>(
                &burn::tensor::activation::relu(theirs.valid().forward(plain)).into_data(),
                tol,
            );
    }
}
