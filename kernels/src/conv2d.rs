//! 2-D convolution on the CPU as im2col + one GEMM per block of images, forward and both
//! gradients.
//!
//! burn 0.22's `flex` backend runs a 2-D convolution through its 3-D path (a layout copy of the
//! input to NHWC, then tiles), its input gradient through a transposed 3-D convolution, and its
//! weight gradient as a convolution of the transposed input by the transposed output gradient:
//! a GEMM per input channel with only `kernel_h x kernel_w` output columns, which gemm runs on
//! its narrowest microkernel. On the small CNN's layers that was up to 2.1x slower than
//! PyTorch, forward + backward; these kernels run at 0.64x to 3.9x PyTorch's speed there
//! (`ssl bench --workloads ops-smallcnn` against `scripts/bench_ops_torch.py`; BENCHMARKS.md).
//!
//! Here, for one image `b` with `K = c_in x k_h x k_w` and `P = h_out x w_out`:
//! - forward: `col_b [K, P] = im2col(x_b)`, `y_b [c_out, P] = W [c_out, K] col_b`;
//! - input gradient: `dcol [K, P] = W^T dy_b`, then `dx_b = col2im(dcol)`;
//! - weight gradient: `dW [c_out, K] = sum over b of dy_b col_b^T`, accumulated over a fixed
//!   run of images per partial sum, the partials added in order.
//!
//! `im2col` splits each input channel once into its zero-padded stride phases (`Phases`: for
//! stride 2, the even and odd rows and columns), so that every kernel tap is one contiguous
//! copy per output row, unrolled for the usual widths, with no per-pixel bounds tests or strided
//! loads; `col2im` adds into the phases and merges them back. Both run AVX2 code when the CPU
//! has it (the same results: copies and additions only).
//!
//! Several images share one GEMM when their maps are small (their columns side by side, so a
//! GEMM has at least 256 columns); blocks run in parallel (rayon), each GEMM single-threaded
//! (the `gemm` crate burn-flex itself uses). Block sizes and partial sums depend only on the
//! shapes, so on one machine results are bit-identical from run to run and across thread
//! counts (gemm picks its microkernels from the CPU, so another CPU may round differently).
//!
//! The forward can also return each output channel's mean and variance over batch and space
//! ([`Im2colConv2d::im2col_conv2d_with_statistics`]): per block right after its GEMM, while the
//! block is in cache, merged in block order; the BatchNorm that follows then needs no passes of
//! its own for them ([`super::conv_batch_norm()`]).
//!
//! 3x3 stride-1 convolutions with at least 16 input and output channels (ResNet's body) go to
//! the Winograd kernels of [`super::winograd`] instead (F(4x4, 3x3): 2.25 multiplications per
//! output and channel pair instead of 9).
//!
//! Only float32 on `flex`, `groups == 1`, `dilation == 1`, explicit or no padding take this
//! path; anything else (`Same` padding, a kernel larger than the padded input, another device)
//! falls back to burn's `conv2d`, and tests hold the two to the same values.

use super::batch_norm::Moments;
pub use super::conv_shared::ConvGeometry;
use super::conv_shared::{gemm_f32, gemm_f32_into};
use super::short_gemm::{short_inner_product, short_side_weight_gradient};
use super::winograd::{MIN_CHANNELS, WinogradConv2d};
use super::{
    assume_written, contiguous, is_flex, slice, with_thread_buffers, written_output, zeroed,
};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// im2col convolution kernels, as a burn backend extension: implemented for `flex` (float32)
/// and for autodiff over it.
#[backend_extension(Flex, Autodiff)]
pub trait Im2colConv2d: Backend {
    /// `x` `[batch, c_in, height, width]`, `weight` `[c_out, c_in, k_h, k_w]`; returns
    /// `[batch, c_out, h_out, w_out]` (no bias).
    fn im2col_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// [`Im2colConv2d::im2col_conv2d`], and per output channel the mean and biased variance of
    /// its values over batch and space (`[c_out]` each, not differentiated): the statistics
    /// of the BatchNorm that follows, gathered from each block of images while its output is
    /// still in cache.
    fn im2col_conv2d_with_statistics(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Gradient with respect to the input, `[batch, c_in, height, width]`.
    fn im2col_conv2d_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// Gradient with respect to the weight, `[c_out, c_in, k_h, k_w]`.
    fn im2col_conv2d_weight_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        kernel: [usize; 2],
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;
}

fn new_tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::new(shape)),
        DType::F32,
    )
}

/// Output columns `[lo, hi)` whose input column `o * stride + j - pad` lies inside `0..width`.
#[inline]
fn valid_range(out: usize, stride: usize, j: usize, pad: usize, width: usize) -> (usize, usize) {
    // ix = o*stride + j - pad >= 0  <=>  o >= (pad - j) / stride (rounded up)
    let lo = if pad > j {
        (pad - j).div_ceil(stride)
    } else {
        0
    };
    // ix <= width - 1  <=>  o <= (width + pad - 1 - j) / stride
    let hi = if width + pad > j {
        ((width + pad - 1 - j) / stride + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Sizes of one input channel's stride phases: `stride_h x stride_w` planes of `rows x cols`
/// pixels. Phase `(a, b)` holds the zero-padded input at rows `a, a + stride_h, ...` and
/// columns `b, b + stride_w, ...` (padded coordinates), so that kernel tap `(i, j)` reads, for
/// every output row, one contiguous run of `w_out` values of phase `(i % stride_h, j % stride_w)`
/// starting at row `oy + i / stride_h`, column `j / stride_w`: im2col becomes row copies
/// without per-pixel bounds tests or strided loads (a stride-1 convolution has one phase, the
/// padded plane).
#[derive(Clone, Copy, Debug)]
struct Phases {
    rows: usize,
    /// Columns per phase row: the `w_out + (k_w - 1) / stride_w` that taps read.
    cols: usize,
}

impl Phases {
    fn new(kernel: [usize; 2], g: &ConvGeometry) -> Self {
        Self {
            rows: g.output[0] + (kernel[0] - 1) / g.stride[0],
            cols: g.output[1] + (kernel[1] - 1) / g.stride[1],
        }
    }

    /// Floats of all phases of one channel.
    fn len(&self, g: &ConvGeometry) -> usize {
        g.stride[0] * g.stride[1] * self.rows * self.cols
    }

    /// Floats of the scratch [`Phases::split`] takes: the phases and one padded row.
    fn scratch_len(&self, g: &ConvGeometry) -> usize {
        self.len(g) + g.stride[1] * self.cols
    }

    /// Offset of the first value kernel tap `(i, j)` reads (output pixel `(0, 0)`).
    #[inline(always)]
    fn tap_start(&self, i: usize, j: usize, g: &ConvGeometry) -> usize {
        let [sh, sw] = g.stride;
        let phase = (i % sh) * sw + j % sw;
        (phase * self.rows + i / sh) * self.cols + j / sw
    }

    /// Splits one input plane `[height, width]` into its zero-padded phases: `out` holds
    /// [`Phases::len`] floats, then one padded row (`stride_w x cols` floats) of scratch. Only
    /// the values that come from the plane are written: `out` must hold zeros everywhere else,
    /// which it keeps from one channel to the next (zero it once, before the first channel of
    /// a geometry). No per-row fills: they were short `memset` calls, as costly as the copies.
    #[inline(always)]
    fn split(&self, plane: &[f32], out: &mut [f32], g: &ConvGeometry) {
        let ([h, w], [sh, sw], [ph, pw]) = (g.input, g.stride, g.padding);
        let (rows, cols) = (self.rows, self.cols);
        let (phases, padded) = out.split_at_mut(self.len(g));
        let padded = &mut padded[..sw * cols];
        // Input columns that land inside the padded row.
        let width = w.min((sw * cols).saturating_sub(pw));
        if width == 0 {
            return;
        }
        for a in 0..sh {
            let (rlo, rhi) = valid_range(rows, sh, a, ph, h);
            for r in rlo..rhi {
                let at = |b: usize| ((a * sw + b) * rows + r) * cols;
                let src = &plane[(r * sh + a - ph) * w..][..width];
                if sw == 1 {
                    copy_exact(&mut phases[at(0) + pw..][..width], src);
                    continue;
                }
                if sw == 2 {
                    // Straight from the input row: padded column `2q + pw` (input column
                    // `2q`) goes to phase `pw % 2`, column `q + pw / 2`; the next one to the
                    // other phase. (Not through the padded row: loading what was just stored
                    // at another alignment stalls store forwarding.)
                    let (even, odd) = phases[at(0)..].split_at_mut(rows * cols);
                    let (first, second, shift_first, shift_second) = if pw % 2 == 0 {
                        (even, odd, pw / 2, pw / 2)
                    } else {
                        (odd, even, pw / 2, pw / 2 + 1)
                    };
                    let pairs = width / 2;
                    let first = &mut first[shift_first..shift_first + pairs + width % 2];
                    let second = &mut second[shift_second..shift_second + pairs];
                    for ((pair, f), s) in src.chunks_exact(2).zip(&mut *first).zip(second) {
                        *f = pair[0];
                        *s = pair[1];
                    }
                    if width % 2 == 1 {
                        first[pairs] = src[width - 1];
                    }
                } else {
                    copy_exact(&mut padded[pw..pw + width], src);
                    for b in 0..sw {
                        let row = &mut phases[at(b)..at(b) + cols];
                        for (d, s) in row.iter_mut().zip(padded.chunks_exact(sw)) {
                            *d = s[b];
                        }
                    }
                }
            }
        }
    }

    /// Adds the phases (`phases`, laid out as by [`Phases::split`]) back onto the input plane
    /// `[height, width]`; padding positions are dropped. The adjoint of [`Phases::split`].
    #[inline(always)]
    fn merge_add(&self, phases: &[f32], plane: &mut [f32], g: &ConvGeometry) {
        let ([h, w], [sh, sw], [ph, pw]) = (g.input, g.stride, g.padding);
        let (rows, cols) = (self.rows, self.cols);
        if sw == 2 {
            // Both column phases of a row at once, interleaved back (the mirror of `split`'s
            // stride-2 path), instead of two strided passes of scalar additions.
            let width = w.min((2 * cols).saturating_sub(pw));
            if width == 0 {
                return;
            }
            let (pairs, shift) = (width / 2, pw / 2);
            for a in 0..sh {
                let (rlo, rhi) = valid_range(rows, sh, a, ph, h);
                for r in rlo..rhi {
                    let at = |b: usize| ((a * 2 + b) * rows + r) * cols;
                    let (even, odd) = (&phases[at(0)..][..cols], &phases[at(1)..][..cols]);
                    let (first, second) = if pw % 2 == 0 {
                        (&even[shift..], &odd[shift..])
                    } else {
                        (&odd[shift..], &even[shift + 1..])
                    };
                    let dst = &mut plane[(r * sh + a - ph) * w..][..width];
                    add_interleaved(dst, &first[..pairs + width % 2], &second[..pairs]);
                }
            }
            return;
        }
        for a in 0..sh {
            let (rlo, rhi) = valid_range(self.rows, sh, a, ph, h);
            for b in 0..sw {
                let (clo, chi) = valid_range(self.cols, sw, b, pw, w);
                if clo >= chi {
                    continue;
                }
                let phase =
                    &phases[(a * sw + b) * self.rows * self.cols..][..self.rows * self.cols];
                for r in rlo..rhi {
                    let src = &phase[r * self.cols + clo..r * self.cols + chi];
                    let dst = &mut plane[(r * sh + a - ph) * w..][..w];
                    let first = clo * sw + b - pw;
                    if sw == 1 {
                        for (d, &v) in dst[first..first + (chi - clo)].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        for (d, &v) in dst[first..].iter_mut().step_by(sw).zip(src) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// `dst[2m] += first[m]` and `dst[2m + 1] += second[m]`: `second` holds `dst.len() / 2` values,
/// `first` the rest (one more when `dst.len()` is odd). Fixed runs of 8 pairs, so that it
/// compiles to shuffles instead of strided scalar additions.
#[inline(always)]
fn add_interleaved(dst: &mut [f32], first: &[f32], second: &[f32]) {
    let pairs = second.len();
    debug_assert!(dst.len() == pairs + first.len() && first.len() - pairs <= 1);
    let mut m = 0;
    while m + 8 <= pairs {
        let d: &mut [f32; 16] = (&mut dst[2 * m..2 * m + 16]).try_into().expect("16 values");
        let f: &[f32; 8] = first[m..m + 8].try_into().expect("8 values");
        let s: &[f32; 8] = second[m..m + 8].try_into().expect("8 values");
        for k in 0..8 {
            d[2 * k] += f[k];
            d[2 * k + 1] += s[k];
        }
        m += 8;
    }
    for m in m..pairs {
        dst[2 * m] += first[m];
        dst[2 * m + 1] += second[m];
    }
    if first.len() > pairs {
        dst[2 * pairs] += first[pairs];
    }
}

/// `dst = src` (equal lengths), inline for the usual row widths instead of a `memcpy` call.
#[inline(always)]
fn copy_exact(dst: &mut [f32], src: &[f32]) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let dst: &mut [f32; N] = dst.try_into().expect("N values");
        *dst = src.try_into().expect("N values");
    }
    match src.len() {
        4 => fixed::<4>(dst, src),
        8 => fixed::<8>(dst, src),
        16 => fixed::<16>(dst, src),
        32 => fixed::<32>(dst, src),
        64 => fixed::<64>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// `dst [rows, W]` (row-major) = the `rows x W` window of `src` starting at `start`, `src` rows
/// `stride` apart. `W` a compile-time width, so that short rows are copied inline.
#[inline(always)]
fn copy_window_fixed<const W: usize>(dst: &mut [f32], src: &[f32], start: usize, stride: usize) {
    for (r, d) in dst.chunks_exact_mut(W).enumerate() {
        let s: &[f32; W] = src[start + r * stride..][..W].try_into().expect("W values");
        d.copy_from_slice(s);
    }
}

/// [`copy_window_fixed`] for any width `w` (`dst` holds `rows * w` values).
#[inline(always)]
fn copy_window(dst: &mut [f32], src: &[f32], start: usize, stride: usize, w: usize) {
    match w {
        1 => copy_window_fixed::<1>(dst, src, start, stride),
        2 => copy_window_fixed::<2>(dst, src, start, stride),
        4 => copy_window_fixed::<4>(dst, src, start, stride),
        8 => copy_window_fixed::<8>(dst, src, start, stride),
        16 => copy_window_fixed::<16>(dst, src, start, stride),
        32 => copy_window_fixed::<32>(dst, src, start, stride),
        _ => {
            for (r, d) in dst.chunks_exact_mut(w).enumerate() {
                d.copy_from_slice(&src[start + r * stride..][..w]);
            }
        }
    }
}

/// The adjoint of [`copy_window_fixed`]: adds `src [rows, W]` onto the window of `dst`.
#[inline(always)]
fn add_window_fixed<const W: usize>(src: &[f32], dst: &mut [f32], start: usize, stride: usize) {
    for (r, s) in src.chunks_exact(W).enumerate() {
        let s: &[f32; W] = s.try_into().expect("W values");
        let d: &mut [f32; W] = (&mut dst[start + r * stride..][..W])
            .try_into()
            .expect("W values");
        for k in 0..W {
            d[k] += s[k];
        }
    }
}

/// [`add_window_fixed`] for any width `w`.
#[inline(always)]
fn add_window(src: &[f32], dst: &mut [f32], start: usize, stride: usize, w: usize) {
    match w {
        1 => add_window_fixed::<1>(src, dst, start, stride),
        2 => add_window_fixed::<2>(src, dst, start, stride),
        4 => add_window_fixed::<4>(src, dst, start, stride),
        8 => add_window_fixed::<8>(src, dst, start, stride),
        16 => add_window_fixed::<16>(src, dst, start, stride),
        32 => add_window_fixed::<32>(src, dst, start, stride),
        _ => {
            for (r, s) in src.chunks_exact(w).enumerate() {
                for (d, &v) in dst[start + r * stride..][..w].iter_mut().zip(s) {
                    *d += v;
                }
            }
        }
    }
}

/// Writes one image `x [c_in, height, width]` as columns of `col`: row `r` of the image's
/// `[c_in * k_h * k_w, h_out * w_out]` im2col matrix goes to `col[r * row_len + offset..]`
/// (`row_len` is `h_out * w_out` times the images in the block, `offset` this image's place).
/// `phases`: scratch for one channel's [`Phases`] (resized here).
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    col: &mut [f32],
    place: (usize, usize),
    c_in: usize,
    kernel: [usize; 2],
    g: &ConvGeometry,
    phases: &mut Vec<f32>,
) {
    with_avx2!(
        im2col_avx2,
        (x: &[f32], col: &mut [f32], place: (usize, usize), c_in: usize, kernel: [usize; 2], g: &ConvGeometry, phases: &mut Vec<f32>),
        im2col_body(x, col, place, c_in, kernel, g, phases)
    )
}

/// [`im2col`]'s body, compiled for the baseline target and for AVX2.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn im2col_body(
    x: &[f32],
    col: &mut [f32],
    (row_len, offset): (usize, usize),
    c_in: usize,
    kernel: [usize; 2],
    g: &ConvGeometry,
    phases: &mut Vec<f32>,
) {
    let ([h, w], [ho, wo]) = (g.input, g.output);
    let p = ho * wo;
    let layout = Phases::new(kernel, g);
    // Zero once: `split` writes only the values that come from the input (see there).
    phases.clear();
    phases.resize(layout.scratch_len(g), 0.0);
    for ci in 0..c_in {
        layout.split(&x[ci * h * w..(ci + 1) * h * w], phases, g);
        for i in 0..kernel[0] {
            for j in 0..kernel[1] {
                let row_index = (ci * kernel[0] + i) * kernel[1] + j;
                let row = &mut col[row_index * row_len + offset..][..p];
                copy_window(row, phases, layout.tap_start(i, j, g), layout.cols, wo);
            }
        }
    }
}

/// Adds one image's columns (laid out as in [`im2col`]) back onto `dx [c_in, height, width]`:
/// the adjoint of [`im2col`]. `phases`: scratch as for [`im2col`].
#[allow(clippy::too_many_arguments)]
fn col2im(
    col: &[f32],
    dx: &mut [f32],
    place: (usize, usize),
    c_in: usize,
    kernel: [usize; 2],
    g: &ConvGeometry,
    phases: &mut Vec<f32>,
) {
    with_avx2!(
        col2im_avx2,
        (col: &[f32], dx: &mut [f32], place: (usize, usize), c_in: usize, kernel: [usize; 2], g: &ConvGeometry, phases: &mut Vec<f32>),
        col2im_body(col, dx, place, c_in, kernel, g, phases)
    )
}

/// [`col2im`]'s body, compiled for the baseline target and for AVX2.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn col2im_body(
    col: &[f32],
    dx: &mut [f32],
    (row_len, offset): (usize, usize),
    c_in: usize,
    kernel: [usize; 2],
    g: &ConvGeometry,
    phases: &mut Vec<f32>,
) {
    let ([h, w], [ho, wo]) = (g.input, g.output);
    let p = ho * wo;
    let layout = Phases::new(kernel, g);
    phases.resize(layout.len(g), 0.0);
    for ci in 0..c_in {
        phases.fill(0.0);
        for i in 0..kernel[0] {
            for j in 0..kernel[1] {
                let row_index = (ci * kernel[0] + i) * kernel[1] + j;
                let row = &col[row_index * row_len + offset..][..p];
                add_window(row, phases, layout.tap_start(i, j, g), layout.cols, wo);
            }
        }
        layout.merge_add(phases, &mut dx[ci * h * w..(ci + 1) * h * w], g);
    }
}

/// Images per GEMM: enough that a block has at least 256 output pixels (`p` per image), so
/// that the GEMMs of late, small feature maps are not tiny, while leaving at least 8 blocks
/// for the threads. Depends only on the shapes (never on the thread count), so that results
/// do not depend on the number of threads.
fn images_per_block(n: usize, p: usize) -> usize {
    256usize.div_ceil(p.max(1)).min((n / 8).max(1))
}

/// Floats of a kernel's `[c, count * p]` block buffer: none when every block is one image
/// (the kernels then use the images' own memory).
fn block_len(c: usize, per: usize, p: usize) -> usize {
    if per > 1 { c * per * p } else { 0 }
}

/// Blocks of images whose weight gradients are summed into one partial: a fixed split (at most
/// 8 partials, added in order), so that the sum is bit-identical from run to run whatever
/// the threads' timing.
fn blocks_per_partial(blocks: usize) -> usize {
    blocks.div_ceil(8).max(1)
}

/// Copies `count` consecutive images `[count, c, p]` into one `[c, count * p]` matrix.
fn images_to_block(images: &[f32], block: &mut [f32], (count, c, p): (usize, usize, usize)) {
    for b in 0..count {
        for ch in 0..c {
            block[ch * count * p + b * p..][..p].copy_from_slice(&images[(b * c + ch) * p..][..p]);
        }
    }
}

/// The inverse of [`images_to_block`], into an uninitialized `images` (every value written).
fn block_to_images(
    block: &[f32],
    images: &mut [MaybeUninit<f32>],
    (count, c, p): (usize, usize, usize),
) {
    for b in 0..count {
        for ch in 0..c {
            let src = &block[ch * count * p + b * p..][..p];
            for (d, &v) in images[(b * c + ch) * p..][..p].iter_mut().zip(src) {
                d.write(v);
            }
        }
    }
}

/// `values` seen as possibly uninitialized, for a kernel that writes every value.
///
/// # Safety
/// Only initialized floats may be written through the view (never `MaybeUninit::uninit()`).
unsafe fn as_uninit(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the caller writes only floats.
    unsafe { &mut *(values as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// The forward convolution on `flex` (see [`Im2colConv2d::im2col_conv2d`]); with `statistics`,
/// also each output channel's [`Moments`], gathered block by block right after the block's
/// GEMM and merged in block order (the same sums whatever the threads' timing).
fn forward_flex(
    x: FlexTensor,
    weight: FlexTensor,
    g: ConvGeometry,
    statistics: bool,
) -> (FlexTensor, Vec<Moments>) {
    let (x, weight) = (contiguous(x), contiguous(weight));
    let (xs, ws) = (slice(&x), slice(&weight));
    let (n, c_in) = (x.layout().shape()[0], x.layout().shape()[1]);
    let wshape = weight.layout().shape();
    let (c_out, kernel) = (wshape[0], [wshape[2], wshape[3]]);
    let (k, p, plane) = (
        c_in * kernel[0] * kernel[1],
        g.output[0] * g.output[1],
        c_in * g.input[0] * g.input[1],
    );
    let mut moments = vec![Moments::EMPTY; if statistics { c_out } else { 0 }];
    // Every block's GEMM (or its copy out of `y`) writes all of its `c_out x p` values per
    // image, and the blocks cover the output.
    let out = written_output(n * c_out * p, |out| {
        if out.is_empty() {
            return;
        }
        let per = images_per_block(n, p);
        let blocks: Vec<Vec<Moments>> = out
            .par_chunks_mut(per * c_out * p)
            .enumerate()
            .map_init(Vec::new, |phases, (block, yb)| {
                with_thread_buffers([k * per * p, block_len(c_out, per, p)], |col, y| {
                    // y [c_out, count * p] = W [c_out, K] col [K, count * p]
                    let count = yb.len() / (c_out * p);
                    let len = count * p;
                    for i in 0..count {
                        let b = block * per + i;
                        let image = &xs[b * plane..(b + 1) * plane];
                        im2col(image, col, (len, i * p), c_in, kernel, &g, phases);
                    }
                    let channels: &[f32] = if count == 1 {
                        if !short_inner_product(yb, (c_out, p, k), ws, col) {
                            gemm_f32_into(yb, (c_out, p, k), ws, (k, 1), col, (p, 1));
                        }
                        // SAFETY: the GEMM above wrote every value of `yb`.
                        unsafe { assume_written(yb) }
                    } else {
                        let y = &mut y[..c_out * len];
                        // SAFETY: only float values are written through the view.
                        let view = unsafe { as_uninit(y) };
                        if !short_inner_product(view, (c_out, len, k), ws, col) {
                            gemm_f32(y, false, (c_out, len, k), ws, (k, 1), col, (len, 1));
                        }
                        block_to_images(y, yb, (count, c_out, p));
                        y
                    };
                    // Either way, channel `ch`'s values of the block are `channels[ch * len..]`.
                    if statistics {
                        channels.chunks_exact(len).map(Moments::of).collect()
                    } else {
                        Vec::new()
                    }
                })
            })
            .collect();
        for block in &blocks {
            for (total, part) in moments.iter_mut().zip(block) {
                *total = total.merge(*part);
            }
        }
    });
    (
        new_tensor(out, [n, c_out, g.output[0], g.output[1]]),
        moments,
    )
}

impl Im2colConv2d for Flex {
    fn im2col_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        g: ConvGeometry,
    ) -> FloatTensor<Self> {
        forward_flex(x, weight, g, false).0
    }

    fn im2col_conv2d_with_statistics(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        g: ConvGeometry,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (y, moments) = forward_flex(x, weight, g, true);
        let mean = moments.iter().map(|m| m.mean as f32).collect();
        let variance = moments.iter().map(|m| m.variance() as f32).collect();
        let c_out = moments.len();
        (
            y,
            FlexTensor::new(
                Bytes::from_elems(mean),
                Layout::contiguous(Shape::new([c_out])),
                DType::F32,
            ),
            FlexTensor::new(
                Bytes::from_elems(variance),
                Layout::contiguous(Shape::new([c_out])),
                DType::F32,
            ),
        )
    }

    fn im2col_conv2d_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        g: ConvGeometry,
    ) -> FloatTensor<Self> {
        let (weight, dy) = (contiguous(weight), contiguous(output_grad));
        let (ws, dys) = (slice(&weight), slice(&dy));
        let wshape = weight.layout().shape();
        let (c_out, c_in, kernel) = (wshape[0], wshape[1], [wshape[2], wshape[3]]);
        let n = dy.layout().shape()[0];
        let (k, p, plane) = (
            c_in * kernel[0] * kernel[1],
            g.output[0] * g.output[1],
            c_in * g.input[0] * g.input[1],
        );
        // Each image's gradient is zeroed right before `col2im` adds into it (in cache, rather
        // than a `memset` of the whole output up front), so every value is written.
        let dx = written_output(n * plane, |dx| {
            if dx.is_empty() {
                return;
            }
            let per = images_per_block(n, p);
            dx.par_chunks_mut(per * plane).enumerate().for_each_init(
                Vec::new,
                |phases, (block, dxb)| {
                    with_thread_buffers([k * per * p, block_len(c_out, per, p)], |dcol, dyblock| {
                        let count = dxb.len() / plane;
                        let len = count * p;
                        let first = block * per;
                        let dyb = &dys[first * c_out * p..(first + count) * c_out * p];
                        // dcol [K, count * p] = W^T [K, c_out] dy [c_out, count * p]
                        if count == 1 {
                            gemm_f32(dcol, false, (k, p, c_out), ws, (1, k), dyb, (p, 1));
                        } else {
                            images_to_block(dyb, dyblock, (count, c_out, p));
                            let dims = (k, len, c_out);
                            gemm_f32(dcol, false, dims, ws, (1, k), dyblock, (len, 1));
                        }
                        for (i, image) in dxb.chunks_exact_mut(plane).enumerate() {
                            let image = zeroed(image);
                            col2im(dcol, image, (len, i * p), c_in, kernel, &g, phases);
                        }
                    })
                },
            );
        });
        new_tensor(dx, [n, c_in, g.input[0], g.input[1]])
    }

    fn im2col_conv2d_weight_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        kernel: [usize; 2],
        g: ConvGeometry,
    ) -> FloatTensor<Self> {
        let (x, dy) = (contiguous(x), contiguous(output_grad));
        let (xs, dys) = (slice(&x), slice(&dy));
        let (n, c_in) = (x.layout().shape()[0], x.layout().shape()[1]);
        let c_out = dy.layout().shape()[1];
        let (k, p, plane) = (
            c_in * kernel[0] * kernel[1],
            g.output[0] * g.output[1],
            c_in * g.input[0] * g.input[1],
        );
        let per = images_per_block(n, p);
        // Partial dW [c_out, K] over fixed runs of blocks, in parallel, then summed in order.
        let blocks = n.div_ceil(per);
        let run = blocks_per_partial(blocks);
        let partials: Vec<Vec<f32>> = (0..blocks.div_ceil(run))
            .into_par_iter()
            .map(|part| {
                let mut dw = vec![0.0f32; c_out * k];
                let mut phases = Vec::new();
                with_thread_buffers([k * per * p, block_len(c_out, per, p)], |col, dyblock| {
                    for block in part * run..((part + 1) * run).min(blocks) {
                        let first = block * per;
                        let count = per.min(n - first);
                        let len = count * p;
                        for i in 0..count {
                            let image = &xs[(first + i) * plane..(first + i + 1) * plane];
                            im2col(image, col, (len, i * p), c_in, kernel, &g, &mut phases);
                        }
                        let dyb = &dys[first * c_out * p..(first + count) * c_out * p];
                        // dW [c_out, K] += dy [c_out, count * p] col^T [count * p, K]
                        let dyb = if count == 1 {
                            dyb
                        } else {
                            images_to_block(dyb, dyblock, (count, c_out, p));
                            &dyblock[..c_out * len]
                        };
                        if !short_side_weight_gradient(&mut dw, (c_out, k, len), dyb, col) {
                            gemm_f32(&mut dw, true, (c_out, k, len), dyb, (len, 1), col, (1, len));
                        }
                    }
                });
                dw
            })
            .collect();
        // Summed in partial order, value by value (the same sums on any thread count), in
        // parallel over runs of the weights.
        const RUN: usize = 4096;
        let dw = written_output(c_out * k, |dw| {
            dw.par_chunks_mut(RUN).enumerate().for_each(|(i, chunk)| {
                let sum = zeroed(chunk);
                for partial in &partials {
                    for (a, b) in sum.iter_mut().zip(&partial[i * RUN..]) {
                        *a += b;
                    }
                }
            })
        });
        new_tensor(dw, [c_out, c_in, kernel[0], kernel[1]])
    }
}

/// The autodiff step of the im2col convolution: its input and weight gradients, each only
/// when that parent is tracked.
#[derive(Debug)]
struct Im2colConv2dBackward;

impl<B: Backend + Im2colConv2d> Backward<B, 2> for Im2colConv2dBackward {
    // Input, weight, kernel size, geometry.
    type State = (
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        [usize; 2],
        ConvGeometry,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, kernel, geometry) = ops.state;
        if let Some(node) = node_x {
            let dx = B::im2col_conv2d_x_backward(weight, grad.clone(), geometry);
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let dw = B::im2col_conv2d_weight_backward(x, grad, kernel, geometry);
            grads.register::<B>(node.id, dw);
        }
    }
}

/// One autodiff step of the im2col convolution: `forward` runs on the inner backend's input and
/// weight and returns the output and anything else (untracked, handed back); the backward is
/// [`Im2colConv2dBackward`].
fn im2col_autodiff<B: Backend + Im2colConv2d, C: CheckpointStrategy, T>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    geometry: ConvGeometry,
    forward: impl FnOnce(
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
    ) -> (B::FloatTensorPrimitive, T),
) -> (FloatTensor<Autodiff<B, C>>, T) {
    let nodes = [x.node(), weight.node()];
    let (x, weight) = (x.into_primitive(), weight.into_primitive());
    match Im2colConv2dBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let shape = burn::backend::TensorMetadata::shape(&weight);
            let kernel = [shape[2], shape[3]];
            let (output, extra) = forward(x.clone(), weight.clone());
            (prep.finish((x, weight, kernel, geometry), output), extra)
        }
        OpsKind::UnTracked(prep) => {
            let (output, extra) = forward(x, weight);
            (prep.finish(output), extra)
        }
    }
}

impl<B: Backend + Im2colConv2d, C: CheckpointStrategy> Im2colConv2d for Autodiff<B, C> {
    fn im2col_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        im2col_autodiff::<B, C, _>(x, weight, geometry, |x, weight| {
            (B::im2col_conv2d(x, weight, geometry), ())
        })
        .0
    }

    fn im2col_conv2d_with_statistics(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (output, (mean, variance)) =
            im2col_autodiff::<B, C, _>(x, weight, geometry, |x, weight| {
                let (output, mean, variance) =
                    B::im2col_conv2d_with_statistics(x, weight, geometry);
                (output, (mean, variance))
            });
        let constant = <Self as AutodiffBackend>::from_inner;
        (output, constant(mean), constant(variance))
    }

    fn im2col_conv2d_x_backward(
        _weight: FloatTensor<Self>,
        _output_grad: FloatTensor<Self>,
        _geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        unreachable!("the im2col convolution's gradients are not themselves differentiated")
    }

    fn im2col_conv2d_weight_backward(
        _x: FloatTensor<Self>,
        _output_grad: FloatTensor<Self>,
        _kernel: [usize; 2],
        _geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        unreachable!("the im2col convolution's gradients are not themselves differentiated")
    }
}

/// The convolution kernel named by the environment variable `SSL_CONV`: `Ok(true)` for
/// Winograd (unset, empty or `winograd`), `Ok(false)` for `im2col`.
///
/// # Errors
/// Any other value, as a one-line message naming it and the accepted values (the CLI reports
/// it before doing anything; [`winograd_enabled`] falls back to Winograd).
pub fn conv_choice_from_env() -> Result<bool, String> {
    match std::env::var("SSL_CONV") {
        Err(std::env::VarError::NotPresent) => Ok(true),
        Ok(v) if v.is_empty() || v == "winograd" => Ok(true),
        Ok(v) if v == "im2col" => Ok(false),
        Ok(v) => Err(format!(
            "SSL_CONV={v:?}: expected `winograd` (the default) or `im2col`"
        )),
        Err(std::env::VarError::NotUnicode(v)) => Err(format!(
            "SSL_CONV={v:?}: expected `winograd` (the default) or `im2col`"
        )),
    }
}

/// Whether 3x3 stride-1 convolutions take the Winograd kernels ([`super::winograd`]): yes,
/// unless the environment variable `SSL_CONV` is `im2col` (read once per process; for
/// measuring one against the other, or ruling Winograd's rounding out). See
/// [`conv_choice_from_env`].
pub fn winograd_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| conv_choice_from_env().unwrap_or(true))
}

/// [`Conv2d::forward`] with our kernels (Winograd for 3x3 stride-1 layers with at least
/// [`MIN_CHANNELS`] input and output channels, im2col otherwise) on float32 `flex` tensors when the layer has
/// `groups == 1`, `dilation == 1`, explicit or no padding and a kernel that fits the padded
/// input (burn's `conv2d` otherwise, which also reports mismatched channels). `input` `[batch, c_in,
/// height, width]` (pixels); returns `[batch, c_out, h_out, w_out]`, the same values as burn's
/// up to float rounding.
pub fn conv2d(conv: &Conv2d, input: Tensor<4>) -> Tensor<4> {
    let Some(plan) = conv_plan(conv, &input) else {
        // burn's path, which also reports a channel mismatch.
        return conv.forward(input);
    };
    let output = if plan.winograd {
        Tensor::<4>::from_dispatch(<Dispatch as WinogradConv2d>::winograd_conv2d(
            input.into_dispatch(),
            conv.weight.val().into_dispatch(),
            plan.geometry,
        ))
    } else {
        Tensor::<4>::from_dispatch(<Dispatch as Im2colConv2d>::im2col_conv2d(
            input.into_dispatch(),
            conv.weight.val().into_dispatch(),
            plan.geometry,
        ))
    };
    match &conv.bias {
        Some(bias) => {
            let c_out = bias.dims()[0];
            output + bias.val().reshape([1, c_out, 1, 1])
        }
        None => output,
    }
}

/// How [`conv2d`] runs a layer on our kernels.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvPlan {
    /// Where the kernel sits on the input.
    pub geometry: ConvGeometry,
    /// Winograd (else im2col).
    pub winograd: bool,
}

/// The plan for `conv` on `input`, or `None` when burn's own `conv2d` must run it (another
/// device or float type, groups, dilation, "same" padding, a kernel larger than the padded
/// input, or a channel mismatch, which burn reports).
pub(super) fn conv_plan(conv: &Conv2d, input: &Tensor<4>) -> Option<ConvPlan> {
    let [_, channels, height, width] = input.dims();
    let weight_shape = conv.weight.dims();
    if conv.groups != 1
        || conv.dilation != [1, 1]
        || input.dtype() != DType::F32
        || conv.weight.val().dtype() != DType::F32
        || channels != weight_shape[1]
        || !is_flex(&input.device())
    {
        return None;
    }
    let (top, left, bottom, right) = match conv.padding {
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Explicit(top, left, bottom, right) => (top, left, bottom, right),
        _ => return None,
    };
    let [kh, kw] = conv.kernel_size;
    let [sh, sw] = conv.stride;
    if height + top + bottom < kh || width + left + right < kw {
        return None;
    }
    let geometry = ConvGeometry {
        stride: conv.stride,
        padding: [top, left],
        input: [height, width],
        output: [
            (height + top + bottom - kh) / sh + 1,
            (width + left + right - kw) / sw + 1,
        ],
    };
    let winograd = [kh, kw] == [3, 3]
        && [sh, sw] == [1, 1]
        && channels >= MIN_CHANNELS
        && weight_shape[0] >= MIN_CHANNELS
        && winograd_enabled();
    Some(ConvPlan { geometry, winograd })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, Tolerance};

    /// Output and the input, weight and bias gradients of [`conv2d`] against burn's
    /// `Conv2d::forward`, with a random upstream gradient.
    fn compare(config: Conv2dConfig, input: [usize; 4]) {
        let device = Device::flex().autodiff();
        let conv = config.init(&device);
        let x0 = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<4>::random(
            conv.forward(x0.clone()).shape(),
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let run = |ours: bool| {
            let x = x0.clone().detach().require_grad();
            let y = if ours {
                conv2d(&conv, x.clone())
            } else {
                conv.forward(x.clone())
            };
            let grads = (y.clone() * upstream.clone()).sum().backward();
            (
                y.into_data(),
                x.grad(&grads).unwrap().into_data(),
                conv.weight.val().grad(&grads).unwrap().into_data(),
                conv.bias
                    .as_ref()
                    .map(|b| b.val().grad(&grads).unwrap().into_data()),
            )
        };
        let (a, b) = (run(true), run(false));
        let tol = Tolerance::<f32>::absolute(1e-3).set_relative(1e-3);
        a.0.assert_approx_eq::<f32>(&b.0, tol);
        a.1.assert_approx_eq::<f32>(&b.1, tol);
        a.2.assert_approx_eq::<f32>(&b.2, tol);
        if let (Some(x), Some(y)) = (a.3, b.3) {
            x.assert_approx_eq::<f32>(&y, tol);
        }
    }

    #[test]
    fn matches_burn_3x3_stride_1_and_2() {
        for stride in [1, 2] {
            let config = Conv2dConfig::new([3, 5], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false);
            compare(config, [2, 3, 9, 8]);
        }
    }

    #[test]
    fn matches_burn_on_first_layers_that_take_the_short_gemms() {
        // 3 or 1 input channels (27 or 9 values per output) and output channels in fours: the
        // forward and the weight gradient of `short_gemm` (on CPUs with AVX2), here with 72,
        // 20 and 9 output pixels per image (whole 16-column strips and a remainder).
        // The last: 3x3 outputs, two images per GEMM (18 columns: a strip and a remainder).
        assert_eq!(images_per_block(19, 9), 2);
        for (c_in, stride, input) in [
            (3, 1, [2, 3, 9, 8]),
            (3, 2, [2, 3, 9, 8]),
            (1, 1, [3, 1, 4, 5]),
            (3, 2, [19, 3, 6, 6]),
        ] {
            let config = Conv2dConfig::new([c_in, 8], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false);
            compare(config, input);
        }
    }

    #[test]
    fn matches_burn_7x7_stem_1x1_and_bias() {
        // ResNet's ImageNet stem (7x7, stride 2, padding 3) and its 1x1 downsample, with bias.
        let stem = Conv2dConfig::new([3, 4], [7, 7])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3));
        compare(stem, [2, 3, 13, 11]);
        let one = Conv2dConfig::new([4, 6], [1, 1]).with_stride([2, 2]);
        compare(one, [3, 4, 7, 7]);
    }

    #[test]
    fn matches_burn_without_padding_and_asymmetric_padding() {
        let valid = Conv2dConfig::new([2, 3], [3, 2]).with_stride([2, 1]);
        compare(valid, [2, 2, 8, 7]);
        let asym = Conv2dConfig::new([2, 3], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(0, 1, 2, 1));
        compare(asym, [2, 2, 6, 5]);
    }

    #[test]
    fn matches_burn_across_stride_phases() {
        // Stride 3 with padding wider than the kernel (whole phase rows and columns of
        // padding), unequal strides, and output widths 8, 16 and 32 (the unrolled row copies).
        let wide = Conv2dConfig::new([2, 3], [3, 2])
            .with_stride([3, 2])
            .with_padding(PaddingConfig2d::Explicit(4, 3, 2, 4))
            .with_bias(false);
        compare(wide, [2, 2, 7, 9]);
        for (stride, size) in [(2, 16), (2, 32), (1, 32)] {
            let config = Conv2dConfig::new([2, 3], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false);
            compare(config, [2, 2, size, size]);
        }
    }

    #[test]
    fn im2col_and_col2im_match_a_direct_gather_on_many_geometries() {
        // Kernels 3x3, 2x2, 1x3, 5x2; strides 1-3 each way; left/top padding 0-3 (even and odd:
        // the stride-2 de-interleave), bottom/right 0 or 2; inputs 4 and 7 wide (with stride 3,
        // trailing input columns and rows no tap reaches), and 19, 32 and 36 wide (the
        // stride-2 re-interleave's runs of 8 pairs, with and without a remainder). Two images per block through the
        // same scratch, so stale values of the first would show in the second.
        let c_in = 2;
        let mut phases = Vec::new();
        let mut geometries = 0;
        for kernel in [[3, 3], [2, 2], [1, 3], [5, 2]] {
            for stride in (1..=3).flat_map(|a| (1..=3).map(move |b| [a, b])) {
                for pad in (0..=3).flat_map(|a| (0..=3).map(move |b| [a, b])) {
                    for trail in [[0, 0], [2, 2], [0, 2]] {
                        for input in [[4, 7], [7, 4], [4, 4], [3, 19], [2, 32], [2, 36]] {
                            let span = |d: usize| input[d] + pad[d] + trail[d];
                            if span(0) < kernel[0] || span(1) < kernel[1] {
                                continue;
                            }
                            let output = [0, 1].map(|d| (span(d) - kernel[d]) / stride[d] + 1);
                            let g = ConvGeometry {
                                stride,
                                padding: pad,
                                input,
                                output,
                            };
                            check_im2col(&g, kernel, c_in, &mut phases);
                            geometries += 1;
                        }
                    }
                }
            }
        }
        assert!(geometries > 1000, "{geometries} geometries checked");
    }

    /// [`im2col`] of two images against a direct gather (exact: copies), and [`col2im`] as
    /// its adjoint (`<col, im2col(x)> == <col2im(col), x>`, exact on small integers).
    fn check_im2col(g: &ConvGeometry, kernel: [usize; 2], c_in: usize, phases: &mut Vec<f32>) {
        let ([h, w], [ho, wo]) = (g.input, g.output);
        let (p, k) = (ho * wo, c_in * kernel[0] * kernel[1]);
        let images: Vec<Vec<f32>> = (0..2)
            .map(|b| {
                (0..c_in * h * w)
                    .map(|v| ((v * 7 + b * 3) % 11) as f32 - 5.0)
                    .collect()
            })
            .collect();
        let mut col = vec![f32::NAN; k * 2 * p];
        for (b, image) in images.iter().enumerate() {
            im2col(image, &mut col, (2 * p, b * p), c_in, kernel, g, phases);
        }
        for (b, image) in images.iter().enumerate() {
            for ci in 0..c_in {
                for (i, j) in (0..kernel[0]).flat_map(|i| (0..kernel[1]).map(move |j| (i, j))) {
                    let row = (ci * kernel[0] + i) * kernel[1] + j;
                    for (oy, ox) in (0..ho).flat_map(|oy| (0..wo).map(move |ox| (oy, ox))) {
                        let iy = (oy * g.stride[0] + i) as isize - g.padding[0] as isize;
                        let ix = (ox * g.stride[1] + j) as isize - g.padding[1] as isize;
                        let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                        let want = if inside {
                            image[(ci * h + iy as usize) * w + ix as usize]
                        } else {
                            0.0
                        };
                        let got = col[row * 2 * p + b * p + oy * wo + ox];
                        assert_eq!(got, want, "{g:?} kernel {kernel:?} image {b} row {row}");
                    }
                }
            }
        }
        let dcol: Vec<f32> = (0..k * 2 * p).map(|v| ((v * 5) % 7) as f32 - 3.0).collect();
        for (b, image) in images.iter().enumerate() {
            let mut dx = vec![0.0f32; c_in * h * w];
            col2im(&dcol, &mut dx, (2 * p, b * p), c_in, kernel, g, phases);
            let lhs: f32 = (0..k)
                .flat_map(|r| (0..p).map(move |q| r * 2 * p + b * p + q))
                .map(|at| dcol[at] * col[at])
                .sum();
            let rhs: f32 = dx.iter().zip(image).map(|(a, b)| a * b).sum();
            assert_eq!(
                lhs, rhs,
                "{g:?} kernel {kernel:?}: col2im is not im2col's adjoint"
            );
        }
    }

    #[test]
    fn phases_split_and_merge_are_adjoint() {
        // <split(x), y> == <x, merge_add(y)> for random x, y: col2im is im2col's adjoint.
        let g = ConvGeometry {
            stride: [2, 3],
            padding: [2, 1],
            input: [7, 8],
            output: [5, 3],
        };
        let layout = Phases::new([3, 3], &g);
        let x: Vec<f32> = (0..56).map(|v| ((v * 37 % 11) as f32) - 5.0).collect();
        let y: Vec<f32> = (0..layout.len(&g))
            .map(|v| ((v * 13 % 7) as f32) - 3.0)
            .collect();
        let mut split = vec![0.0; layout.scratch_len(&g)];
        layout.split(&x, &mut split, &g);
        split.truncate(layout.len(&g));
        let mut merged = vec![0.0; 56];
        layout.merge_add(&y, &mut merged, &g);
        let lhs: f32 = split.iter().zip(&y).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&merged).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
        assert!(
            split.iter().all(|v| v.is_finite()),
            "every phase value written"
        );
    }

    #[test]
    fn matches_burn_with_several_images_per_gemm() {
        // 4x4 outputs (16 pixels): blocks of several images per GEMM, and a last, shorter block.
        let config = Conv2dConfig::new([3, 4], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
        assert_eq!(images_per_block(19, 16), 2);
        compare(config, [19, 3, 8, 8]);
    }

    #[test]
    fn matches_burn_when_kernel_columns_see_only_padding() {
        // A 5x5 "same" convolution on a one-pixel-wide map, and the 7x7/2 stem on 2x2 inputs:
        // whole kernel columns fall in the padding.
        let narrow = Conv2dConfig::new([2, 3], [5, 5])
            .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
            .with_bias(false);
        compare(narrow, [2, 2, 6, 1]);
        let stem = Conv2dConfig::new([3, 4], [7, 7])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
            .with_bias(false);
        compare(stem, [2, 3, 2, 2]);
    }

    #[test]
    fn matches_burn_untracked_frozen_inference_and_transposed() {
        let device = Device::flex().autodiff();
        let conv = Conv2dConfig::new([3, 4], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([3, 3, 9, 7], Distribution::Normal(0.0, 1.0), &device);
        let tol = Tolerance::<f32>::absolute(1e-4).set_relative(1e-4);
        // The BYOL target: an autodiff device, nothing requiring grad (untracked).
        let target = conv.valid().train().no_grad();
        conv2d(&target, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&target.forward(x.clone()).into_data(), tol);
        // Inference on the plain flex device.
        let plain = conv.valid();
        let xp = x.clone().without_autodiff();
        conv2d(&plain, xp.clone())
            .into_data()
            .assert_approx_eq::<f32>(&plain.forward(xp).into_data(), tol);
        // A first layer: the input needs no gradient, the weight does.
        let grads = conv2d(&conv, x.clone()).sum().backward();
        let reference = conv.forward(x.clone()).sum().backward();
        conv.weight
            .val()
            .grad(&grads)
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(
                &conv.weight.val().grad(&reference).unwrap().into_data(),
                tol,
            );
        // A frozen layer: the weight needs no gradient, the input does.
        let frozen = conv.clone().no_grad();
        let xt = x.clone().swap_dims(2, 3).require_grad();
        let grads = conv2d(&frozen, xt.clone()).sum().backward();
        let reference = frozen.forward(xt.clone()).sum().backward();
        assert!(frozen.weight.val().grad(&grads).is_none());
        xt.grad(&grads)
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(&xt.grad(&reference).unwrap().into_data(), tol);
    }

    #[test]
    fn valid_range_keeps_every_input_column_inside() {
        for (out, stride, j, pad, width) in [
            (5, 2, 0, 1, 9),
            (4, 1, 2, 1, 4),
            (3, 3, 0, 0, 2),
            (1, 1, 0, 2, 1),
            (1, 1, 4, 2, 1),
            (1, 2, 6, 3, 2),
        ] {
            let (lo, hi) = valid_range(out, stride, j, pad, width);
            for o in 0..out {
                let ix = (o * stride + j) as isize - pad as isize;
                assert_eq!((lo..hi).contains(&o), ix >= 0 && ix < width as isize);
            }
        }
    }
}
