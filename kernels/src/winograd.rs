//! 3x3, stride-1 convolutions on the CPU with Winograd's minimal filtering, forward and both
//! gradients: F(2x2, 3x3) and F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
//! Neural Networks", CVPR 2016, section 4).
//!
//! An output tile `Y` (`m x m` pixels) of one output channel is
//! `Y = A^T [ sum over c_in of (G g G^T) ⊙ (B^T d B) ] A`, with `g` the `3 x 3` kernel, `d` the
//! `alpha x alpha` input window (`alpha = m + 2`) and `A`, `B`, `G` fixed matrices (below). For
//! every one of the `alpha^2` transform positions `xi` the sum over input channels is one GEMM,
//! `M[xi] [c_out, tiles] = U[xi] [c_out, c_in] V[xi] [c_in, tiles]`, over all tiles of the batch:
//! `alpha^2 / m^2` multiplications per output and input channel instead of 9 (4 for F(2x2),
//! 2.25 for F(4x4)).
//!
//! The backward pass is the exact adjoint of that computation (so it needs no other algorithm):
//! - `dM = A dY A^T` per tile (the adjoint of the output transform);
//! - input gradient: `dV[xi] = U[xi]^T dM[xi]`, then `dX` = the sum over overlapping tiles of
//!   `B dV B^T` (the adjoint of the input transform);
//! - weight gradient: `dU[xi] = dM[xi] V[xi]^T` (one GEMM whose inner dimension is every tile of
//!   the batch), then `dW = G^T dU G`.
//!
//! Layouts (all float32, row-major): transforms of an input are `[channel][xi][tile]` (written
//! in parallel over channels), GEMM results `[xi][channel][tile]` (in parallel over `xi`), and
//! tiles are numbered `(image, tile_row, tile_column)`. Each GEMM is single-threaded and every sum
//! has a fixed order, so results are bit-identical from run to run and across thread counts on
//! one machine. The transforms hold `alpha^2 / m^2` times an activation's size (2.25x for F(4x4)),
//! recomputed in the backward pass rather than kept.
//!
//! Rounding differs from a direct convolution's (the transforms mix pixels before the
//! multiplications), and a non-finite input spreads over its whole tile; the trainer's
//! non-finite guard sees either.
//!
//! [`super::conv2d()`] sends here float32 `flex` convolutions with a 3x3 kernel, stride 1,
//! dilation 1, one group and at least [`MIN_CHANNELS`] input and output channels (ResNet's
//! body; `SSL_CONV=im2col` turns it off, see [`super::conv2d::winograd_enabled`]); tests hold the
//! results to burn's `conv2d`. On ResNet-18's BYOL step (batch 64, 2 cores) it made the step
//! about 1.5x faster than with im2col for these layers (BENCHMARKS.md).

use super::conv_shared::{ConvGeometry, gemm_f32};
use super::{Scratch, contiguous, slice};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;

/// Fewest input and output channels for which the Winograd path is taken: below that the
/// transforms cost more than the GEMMs save (a network's first layer, on 3 colour channels).
pub const MIN_CHANNELS: usize = 16;

/// One Winograd algorithm F(m x m, 3 x 3): output tiles of `m x m` pixels from input windows of
/// `alpha x alpha = (m + 2) x (m + 2)` pixels. Matrices row-major.
#[derive(Debug)]
pub struct Tiling {
    /// Output tile side (pixels).
    pub m: usize,
    /// Input window side, `m + 2` (pixels).
    pub alpha: usize,
    /// Kernel transform `G`, `[alpha, 3]`.
    g: &'static [f32],
}

/// F(2x2, 3x3): interpolation points 0, 1, -1 and infinity (Lavin & Gray, section 4.1).
pub const F2X2: Tiling = Tiling {
    m: 2,
    alpha: 4,
    #[rustfmt::skip]
    g: &[
        1.0, 0.0, 0.0,
        0.5, 0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0, 0.0, 1.0,
    ],
};

/// F(4x4, 3x3): interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray, section 4.2).
pub const F4X4: Tiling = Tiling {
    m: 4,
    alpha: 6,
    #[rustfmt::skip]
    g: &[
        1.0 / 4.0, 0.0, 0.0,
        -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
        -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
        1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
        1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
        0.0, 0.0, 1.0,
    ],
};

/// `a` `[R, C]` transposed, at compile time.
const fn transposed<const R: usize, const C: usize>(a: [[f32; C]; R]) -> [[f32; R]; C] {
    let mut t = [[0.0f32; R]; C];
    let mut r = 0;
    while r < R {
        let mut c = 0;
        while c < C {
            t[c][r] = a[r][c];
            c += 1;
        }
        r += 1;
    }
    t
}

/// `B^T` of F(4x4, 3x3) as a constant matrix (the transforms' vector code folds its zeros).
#[rustfmt::skip]
const F4X4_BT: [[f32; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
/// `A^T` of F(4x4, 3x3).
#[rustfmt::skip]
const F4X4_AT: [[f32; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];
const F4X4_B: [[f32; 6]; 6] = transposed(F4X4_BT);
const F4X4_A: [[f32; 4]; 6] = transposed(F4X4_AT);
/// `B^T` of F(2x2, 3x3).
#[rustfmt::skip]
const F2X2_BT: [[f32; 4]; 4] = [
    [1.0, 0.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, 0.0],
    [0.0, -1.0, 1.0, 0.0],
    [0.0, 1.0, 0.0, -1.0],
];
/// `A^T` of F(2x2, 3x3).
#[rustfmt::skip]
const F2X2_AT: [[f32; 4]; 2] = [
    [1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, -1.0],
];
const F2X2_B: [[f32; 4]; 4] = transposed(F2X2_BT);
const F2X2_A: [[f32; 2]; 4] = transposed(F2X2_AT);

/// What [`gather_tiles`] transforms: input windows (`B^T d B`, `alpha x alpha` pixels) or output
/// gradient tiles (`A dY A^T`, `m x m` pixels, the adjoint of the output transform).
#[derive(Clone, Copy, Debug)]
enum Gather {
    Input,
    OutputGrad,
}

/// What [`scatter_tiles`] assembles: output tiles (`A^T M A`, `m x m` pixels) or the input
/// gradient (`B dV B^T` summed over overlapping `alpha x alpha` windows, the adjoint of the
/// input transform).
#[derive(Clone, Copy, Debug)]
enum Scatter {
    Output,
    InputGrad,
}

/// The tiling with the fewest GEMM multiplications for an output of `[height, width]` pixels
/// (`alpha^2` per tile, partial tiles counted whole); F(2x2) on ties, the more accurate one.
pub fn tiling_for(output: [usize; 2]) -> &'static Tiling {
    let cost = |t: &Tiling| t.alpha * t.alpha * output[0].div_ceil(t.m) * output[1].div_ceil(t.m);
    if cost(&F4X4) < cost(&F2X2) {
        &F4X4
    } else {
        &F2X2
    }
}

/// Winograd convolution kernels, as a burn backend extension: implemented for `flex`
/// (float32) and for autodiff over it. `geometry.stride` must be `[1, 1]`.
#[backend_extension(Flex, Autodiff)]
pub trait WinogradConv2d: Backend {
    /// `x` `[batch, c_in, height, width]`, `weight` `[c_out, c_in, 3, 3]`; returns
    /// `[batch, c_out, h_out, w_out]` (no bias).
    fn winograd_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// Gradients with respect to the input (`[batch, c_in, height, width]`, when `need_x`) and
    /// the weight (`[c_out, c_in, 3, 3]`, when `need_weight`), computed together: the output
    /// gradient's tile transforms serve both.
    fn winograd_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: ConvGeometry,
        need_x: bool,
        need_weight: bool,
    ) -> (Option<FloatTensor<Self>>, Option<FloatTensor<Self>>);
}

fn new_tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::new(shape)),
        DType::F32,
    )
}

/// Where tiles sit: `tiles` `[tile_rows, tile_columns]` per image, `m` pixels apart.
#[derive(Clone, Copy, Debug)]
struct TileGrid {
    images: usize,
    rows: usize,
    columns: usize,
    m: usize,
}

impl TileGrid {
    fn new(images: usize, output: [usize; 2], m: usize) -> Self {
        Self {
            images,
            rows: output[0].div_ceil(m),
            columns: output[1].div_ceil(m),
            m,
        }
    }

    fn per_image(&self) -> usize {
        self.rows * self.columns
    }

    fn total(&self) -> usize {
        self.images * self.per_image()
    }
}

/// Lanes per step of the transforms' vector loops.
const LANES: usize = 8;

/// `out[o][..] = sum_i mat[o][i] src[i][..]` over vectors of length `len` (`src` `[IN][src_stride]`,
/// `out` `[OUT][out_stride]`), all outputs in one pass over the inputs. `mat` is one of the
/// constant transform matrices: once inlined, its zero terms vanish at compile time.
#[inline(always)]
fn transform_lanes<const IN: usize, const OUT: usize>(
    mat: &[[f32; IN]; OUT],
    (src, src_stride): (&[f32], usize),
    (out, out_stride): (&mut [f32], usize),
    len: usize,
) {
    let inputs: [&[f32]; IN] = std::array::from_fn(|i| &src[i * src_stride..][..len]);
    let mut rows = out.chunks_mut(out_stride.max(1));
    let outputs: [&mut [f32]; OUT] = std::array::from_fn(|_| {
        let row = rows.next().expect("an output row per transform output");
        &mut row[..len]
    });
    let whole = len - len % LANES;
    for x in (0..whole).step_by(LANES) {
        let mut v = [[0.0f32; LANES]; IN];
        for i in 0..IN {
            v[i].copy_from_slice(&inputs[i][x..x + LANES]);
        }
        for o in 0..OUT {
            let mut acc = [0.0f32; LANES];
            for i in 0..IN {
                let c = mat[o][i];
                if c != 0.0 {
                    for l in 0..LANES {
                        acc[l] += c * v[i][l];
                    }
                }
            }
            outputs[o][x..x + LANES].copy_from_slice(&acc);
        }
    }
    for x in whole..len {
        for o in 0..OUT {
            let mut acc = 0.0f32;
            for i in 0..IN {
                let c = mat[o][i];
                if c != 0.0 {
                    acc += c * inputs[i][x];
                }
            }
            outputs[o][x] = acc;
        }
    }
}

/// `dst[t] = src[t * M]` for every `t` (`M`, the tile side, a constant); `src` holds at least
/// `dst.len() * M` values.
#[inline(always)]
fn strided_load<const M: usize>(dst: &mut [f32], src: &[f32]) {
    let src = &src[..dst.len() * M];
    for (d, c) in dst.iter_mut().zip(src.chunks_exact(M)) {
        *d = c[0];
    }
}

/// `dst[t * M] += src[t]` for every `t`; `dst` holds at least `src.len() * M` values.
#[inline(always)]
fn strided_add<const M: usize>(dst: &mut [f32], src: &[f32]) {
    let dst = &mut dst[..src.len() * M];
    for (d, &v) in dst.chunks_exact_mut(M).zip(src) {
        d[0] += v;
    }
}

/// One channel's tiles for [`gather_tiles`]: `dst` `[alpha^2][tiles]`, scratch `padded`
/// `[ph, pw]`, `windows` `[win^2][chunk]`, `rows` `[alpha][win][chunk]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gather_channel<const M: usize, const WIN: usize, const ALPHA: usize>(
    planes: &[f32],
    (ch, channels, [h, w]): (usize, usize, [usize; 2]),
    [pt, pl]: [usize; 2],
    grid: TileGrid,
    l: &[[f32; WIN]; ALPHA],
    (padded, pw, windows, rows): (&mut [f32], usize, &mut [f32], &mut [f32]),
    ipc: usize,
    dst: &mut [f32],
) {
    let (tiles, tpi, win, alpha) = (grid.total(), grid.per_image(), WIN, ALPHA);
    let ph = (padded.len() - M) / pw;
    let chunk = ipc * tpi;
    for first in (0..grid.images).step_by(ipc) {
        let count = ipc.min(grid.images - first);
        let len = count * tpi;
        // windows[i][j][tile] = padded[tile_row * m + i][tile_column * m + j]
        for b in 0..count {
            let plane = &planes[((first + b) * channels + ch) * h * w..][..h * w];
            padded.fill(0.0);
            let cols = w.min(pw.saturating_sub(pl));
            for iy in 0..h.min(ph.saturating_sub(pt)) {
                padded[(iy + pt) * pw + pl..][..cols].copy_from_slice(&plane[iy * w..][..cols]);
            }
            for i in 0..win {
                for j in 0..win {
                    let dst = &mut windows[(i * win + j) * chunk + b * tpi..][..tpi];
                    for ty in 0..grid.rows {
                        strided_load::<M>(
                            &mut dst[ty * grid.columns..][..grid.columns],
                            &padded[(ty * M + i) * pw + j..],
                        );
                    }
                }
            }
        }
        // rows[k][j][..] = sum_i L[k][i] windows[i][j][..]
        for j in 0..win {
            transform_lanes(
                l,
                (&windows[j * chunk..], win * chunk),
                (&mut rows[j * chunk..], win * chunk),
                len,
            );
        }
        // V[k][j'][tiles] = sum_j L[j'][j] rows[k][j][..]
        for k in 0..alpha {
            transform_lanes(
                l,
                (&rows[k * win * chunk..], chunk),
                (&mut dst[k * alpha * tiles + first * tpi..], tiles),
                len,
            );
        }
    }
}

/// Tiles per transform chunk: whole images, about 256 tiles (the transforms' vectors), but at
/// most a quarter of the batch so that image-parallel work still splits across threads.
/// Depends only on the shapes.
fn images_per_chunk(images: usize, tiles_per_image: usize) -> usize {
    256usize
        .div_ceil(tiles_per_image.max(1))
        .min((images / 4).max(1))
}

/// Transforms of every tile of `planes` `[images, channels, height, width]`: for each tile, the
/// `win x win` window at `(row * m - pad_top, column * m - pad_left)` (zero outside the plane)
/// becomes `L window L^T` (`l` `[alpha, win]`). Returns `[channels][alpha^2][tiles]`, computed
/// in parallel over channels; the arithmetic runs on vectors over a chunk of tiles.
fn gather_tiles(
    planes: &[f32],
    (channels, hw): (usize, [usize; 2]),
    pad: [usize; 2],
    grid: TileGrid,
    of: Gather,
) -> Scratch {
    let m = grid.m;
    let alpha = m + 2;
    let win = match of {
        Gather::Input => alpha,
        Gather::OutputGrad => m,
    };
    let (tiles, a2, tpi) = (grid.total(), alpha * alpha, grid.per_image());
    // The padded plane covers every window.
    let ph = grid.rows * m + win - m;
    let pw = grid.columns * m + win - m;
    let mut out = Scratch::take(channels * a2 * tiles);
    if tiles == 0 {
        return out;
    }
    let ipc = images_per_chunk(grid.images, tpi);
    let chunk = ipc * tpi;
    out.par_chunks_mut(a2 * tiles).enumerate().for_each_init(
        || {
            (
                // M spare values at the end, for the strided loads' last chunk.
                vec![0.0f32; ph * pw + m],
                vec![0.0f32; win * win * chunk],
                vec![0.0f32; alpha * win * chunk],
            )
        },
        |(padded, windows, rows), (ch, dst)| {
            let scratch = (&mut padded[..], pw, &mut windows[..], &mut rows[..]);
            let shape = (ch, channels, hw);
            macro_rules! gather {
                ($name:ident, $m:literal, $l:expr) => {
                    with_avx2!(
                        $name,
                        (planes: &[f32], shape: (usize, usize, [usize; 2]), pad: [usize; 2],
                         grid: TileGrid, scratch: (&mut [f32], usize, &mut [f32], &mut [f32]),
                         ipc: usize, dst: &mut [f32]),
                        gather_channel::<$m, _, _>(planes, shape, pad, grid, $l, scratch, ipc, dst)
                    )
                };
            }
            match (m, of) {
                (4, Gather::Input) => gather!(input4, 4, &F4X4_BT),
                (4, Gather::OutputGrad) => gather!(output_grad4, 4, &F4X4_A),
                (2, Gather::Input) => gather!(input2, 2, &F2X2_BT),
                (2, Gather::OutputGrad) => gather!(output_grad2, 2, &F2X2_A),
                _ => unreachable!("tilings are F(2x2) and F(4x4)"),
            }
        },
    );
    out
}

/// One chunk of images for [`scatter_tiles`]: `dst` `[count, channels, h, w]` starting at image
/// `first`; scratch `padded` `[ph, pw]`, `columns` `[alpha][win][chunk]`, `windows`
/// `[win^2][chunk]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scatter_chunk<const M: usize, const WIN: usize, const ALPHA: usize>(
    src: &[f32],
    (channels, [h, w]): (usize, [usize; 2]),
    [pt, pl]: [usize; 2],
    grid: TileGrid,
    r: &[[f32; ALPHA]; WIN],
    (padded, pw, columns, windows): (&mut [f32], usize, &mut [f32], &mut [f32]),
    (first, chunk): (usize, usize),
    dst: &mut [f32],
) {
    let (tiles, tpi, win, alpha) = (grid.total(), grid.per_image(), WIN, ALPHA);
    let count = dst.len() / (channels * h * w);
    let len = count * tpi;
    for ch in 0..channels {
        // columns[k][c][..] = sum_l R[c][l] src[k][l][ch][..]
        for k in 0..alpha {
            transform_lanes(
                r,
                (
                    &src[(k * alpha * channels + ch) * tiles + first * tpi..],
                    channels * tiles,
                ),
                (&mut columns[k * win * chunk..], chunk),
                len,
            );
        }
        // windows[a][c][..] = sum_k R[a][k] columns[k][c][..]
        for c in 0..win {
            transform_lanes(
                r,
                (&columns[c * chunk..], win * chunk),
                (&mut windows[c * chunk..], win * chunk),
                len,
            );
        }
        for b in 0..count {
            padded.fill(0.0);
            for a in 0..win {
                for c in 0..win {
                    let values = &windows[(a * win + c) * chunk + b * tpi..][..tpi];
                    for ty in 0..grid.rows {
                        strided_add::<M>(
                            &mut padded[(ty * M + a) * pw + c..],
                            &values[ty * grid.columns..][..grid.columns],
                        );
                    }
                }
            }
            let plane = &mut dst[(b * channels + ch) * h * w..][..h * w];
            for iy in 0..h {
                plane[iy * w..(iy + 1) * w].copy_from_slice(&padded[(iy + pt) * pw + pl..][..w]);
            }
        }
    }
}

/// The adjoint of [`gather_tiles`]'s layout: from `src` `[alpha^2][channels][tiles]`, adds
/// `R s R^T` (`r` `[win, alpha]`) of every tile onto the `win x win` window at
/// `(row * m, column * m)` of a padded plane, then crops `[height, width]` at
/// `(pad_top, pad_left)` into `out` `[images, channels, height, width]` (every value written), in
/// parallel over chunks of images; the arithmetic runs on vectors over a chunk of tiles.
fn scatter_tiles(
    src: &[f32],
    (channels, [h, w]): (usize, [usize; 2]),
    pad: [usize; 2],
    grid: TileGrid,
    to: Scatter,
    out: &mut [f32],
) {
    let m = grid.m;
    let alpha = m + 2;
    let win = match to {
        Scatter::Output => m,
        Scatter::InputGrad => alpha,
    };
    let (tiles, tpi) = (grid.total(), grid.per_image());
    let ph = grid.rows * m + win - m;
    let pw = grid.columns * m + win - m;
    assert_eq!(out.len(), grid.images * channels * h * w);
    if tiles == 0 || h * w == 0 {
        out.fill(0.0);
        return;
    }
    let ipc = images_per_chunk(grid.images, tpi);
    let chunk = ipc * tpi;
    out.par_chunks_mut(ipc * channels * h * w)
        .enumerate()
        .for_each_init(
            || {
                (
                    // M spare values at the end, for the strided adds' last chunk.
                    vec![0.0f32; ph * pw + m],
                    vec![0.0f32; alpha * win * chunk],
                    vec![0.0f32; win * win * chunk],
                )
            },
            |(padded, columns, windows), (part, dst)| {
                let scratch = (&mut padded[..], pw, &mut columns[..], &mut windows[..]);
                let (shape, at) = ((channels, [h, w]), (part * ipc, chunk));
                macro_rules! scatter {
                    ($name:ident, $m:literal, $r:expr) => {
                        with_avx2!(
                            $name,
                            (src: &[f32], shape: (usize, [usize; 2]), pad: [usize; 2],
                             grid: TileGrid, scratch: (&mut [f32], usize, &mut [f32], &mut [f32]),
                             at: (usize, usize), dst: &mut [f32]),
                            scatter_chunk::<$m, _, _>(src, shape, pad, grid, $r, scratch, at, dst)
                        )
                    };
                }
                match (m, to) {
                    (4, Scatter::Output) => scatter!(output4, 4, &F4X4_AT),
                    (4, Scatter::InputGrad) => scatter!(input_grad4, 4, &F4X4_B),
                    (2, Scatter::Output) => scatter!(output2, 2, &F2X2_AT),
                    (2, Scatter::InputGrad) => scatter!(input_grad2, 2, &F2X2_B),
                    _ => unreachable!("tilings are F(2x2) and F(4x4)"),
                }
            },
        );
}

/// `C[xi][i * 3 + j] = G[k][i] G[l][j]` for `xi = k * alpha + l`: the kernel transform as one
/// `[alpha^2, 9]` matrix.
fn kernel_transform_matrix(t: &Tiling) -> Vec<f32> {
    let alpha = t.alpha;
    let mut c = vec![0.0f32; alpha * alpha * 9];
    for k in 0..alpha {
        for l in 0..alpha {
            for i in 0..3 {
                for j in 0..3 {
                    c[(k * alpha + l) * 9 + i * 3 + j] = t.g[k * 3 + i] * t.g[l * 3 + j];
                }
            }
        }
    }
    c
}

/// `U[c_out][xi][c_in] = (G g G^T)[xi]` for every kernel `g` of `weight` `[c_out, c_in, 3, 3]`:
/// per output channel, `U[c_out] [alpha^2, c_in] = C [alpha^2, 9] weight[c_out]^T [9, c_in]`, in
/// parallel over output channels. As a matrix per `xi`, `U[xi] [c_out, c_in]` has row stride
/// `alpha^2 * c_in`.
fn transform_weight(weight: &[f32], (c_out, c_in): (usize, usize), t: &Tiling) -> Scratch {
    let a2 = t.alpha * t.alpha;
    let c = kernel_transform_matrix(t);
    let mut u = Scratch::take(c_out * a2 * c_in);
    if c_in > 0 {
        u.par_chunks_mut(a2 * c_in)
            .enumerate()
            .for_each(|(co, dst)| {
                let w = &weight[co * c_in * 9..][..c_in * 9];
                gemm_f32(dst, false, (a2, c_in, 9), &c, (9, 1), w, (1, 9));
            });
    }
    u
}

/// The adjoint of [`transform_weight`] from `dU` `[alpha^2][c_out][c_in]`:
/// `dW[c_out] [c_in, 9] = dU[.][c_out]^T [c_in, alpha^2] C [alpha^2, 9]`, `[c_out, c_in, 3, 3]`,
/// in parallel over output channels.
fn weight_from_transform(du: &[f32], (c_out, c_in): (usize, usize), t: &Tiling) -> Vec<f32> {
    let a2 = t.alpha * t.alpha;
    let c = kernel_transform_matrix(t);
    let mut dw = vec![0.0f32; c_out * c_in * 9];
    if c_in > 0 {
        dw.par_chunks_mut(c_in * 9)
            .enumerate()
            .for_each(|(co, dst)| {
                let lhs = &du[co * c_in..];
                gemm_f32(
                    dst,
                    false,
                    (c_in, 9, a2),
                    lhs,
                    (1, c_out * c_in),
                    &c,
                    (9, 1),
                );
            });
    }
    dw
}

/// `M[xi] [rows, tiles] = lhs[xi] [rows, inner] rhs[xi] [inner, tiles]` for every `xi`, in
/// parallel over `xi`; `lhs` given as `(values, per-xi offset, row stride, column stride)`,
/// `rhs` is `[inner][alpha^2][tiles]`. Returns `[alpha^2][rows][tiles]`.
fn gemm_per_position(
    (lhs, lhs_xi, lhs_rs, lhs_cs): (&[f32], usize, usize, usize),
    rhs: &[f32],
    (a2, rows, inner, tiles): (usize, usize, usize, usize),
) -> Scratch {
    let mut out = Scratch::take(a2 * rows * tiles);
    if tiles == 0 || rows == 0 {
        return out;
    }
    out.par_chunks_mut(rows * tiles)
        .enumerate()
        .for_each(|(xi, dst)| {
            gemm_f32(
                dst,
                false,
                (rows, tiles, inner),
                &lhs[xi * lhs_xi..],
                (lhs_rs, lhs_cs),
                &rhs[xi * tiles..],
                (a2 * tiles, 1),
            );
        });
    out
}

/// Sizes shared by the forward and backward passes of one convolution.
struct Plan {
    n: usize,
    c_in: usize,
    c_out: usize,
    t: &'static Tiling,
    /// `alpha^2`, transform positions.
    a2: usize,
    /// Values per image of the input and of the output.
    plane_in: usize,
    plane_out: usize,
    /// Images per group ([`images_per_group`]).
    per: usize,
}

impl Plan {
    /// For `x` `[n, c_in, ...]` and `weight` `[c_out, c_in, 3, 3]`.
    fn new(x: &FlexTensor, weight: &FlexTensor, g: &ConvGeometry) -> Self {
        let (n, c_in, c_out) = (
            x.layout().shape()[0],
            weight.layout().shape()[1],
            weight.layout().shape()[0],
        );
        let t = tiling_for(g.output);
        let a2 = t.alpha * t.alpha;
        let tpi = TileGrid::new(1, g.output, t.m).per_image();
        Self {
            n,
            c_in,
            c_out,
            t,
            a2,
            plane_in: c_in * g.input[0] * g.input[1],
            plane_out: c_out * g.output[0] * g.output[1],
            per: images_per_group(n, tpi, a2, c_in.max(c_out)),
        }
    }
}

/// Bytes of one transform (`alpha^2 x channels x tiles` floats) per group of images: the batch
/// runs through transforms, GEMMs and back one group at a time, so that a group's transforms
/// stay in the CPU's caches instead of going through memory (and stay small).
#[cfg(not(test))]
const GROUP_BYTES: usize = 4 << 20;
/// Small in tests, so that their small batches run in several groups.
#[cfg(test)]
const GROUP_BYTES: usize = 16 << 10;

/// Fewest tiles per group (when the batch has them): the GEMMs' shared dimension. Below it,
/// repacking `U[xi]` (`c_out x c_in`) for every group costs more than the cache saves (deep
/// layers: 512 channels, one tile per image).
#[cfg(not(test))]
const GROUP_MIN_TILES: usize = 256;
/// One in tests, so that their small batches still run in several groups.
#[cfg(test)]
const GROUP_MIN_TILES: usize = 1;

/// Images per group (see [`GROUP_BYTES`] and [`GROUP_MIN_TILES`]; at least 1, groups of equal
/// size but the last). Depends only on the shapes.
fn images_per_group(n: usize, tiles_per_image: usize, a2: usize, channels: usize) -> usize {
    let per_image = (a2 * channels * tiles_per_image * 4).max(1);
    let by_bytes = GROUP_BYTES / per_image;
    let by_tiles = GROUP_MIN_TILES.div_ceil(tiles_per_image.max(1));
    let most = by_bytes.max(by_tiles).clamp(1, n.max(1));
    n.div_ceil(n.div_ceil(most).max(1)).max(1)
}

impl WinogradConv2d for Flex {
    fn winograd_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        g: ConvGeometry,
    ) -> FloatTensor<Self> {
        let (x, weight) = (contiguous(x), contiguous(weight));
        let s = Plan::new(&x, &weight, &g);
        let (t, a2, per, plane_in, plane_out) = (s.t, s.a2, s.per, s.plane_in, s.plane_out);
        let u = transform_weight(slice(&weight), (s.c_out, s.c_in), t);
        let xs = slice(&x);
        let mut y = vec![0.0f32; s.n * plane_out];
        if plane_out > 0 {
            for (group, yg) in y.chunks_mut(per * plane_out).enumerate() {
                let count = yg.len() / plane_out;
                let grid = TileGrid::new(count, g.output, t.m);
                let xg = &xs[group * per * plane_in..][..count * plane_in];
                let v = gather_tiles(xg, (s.c_in, g.input), g.padding, grid, Gather::Input);
                // M[xi] [c_out, tiles] = U[xi] [c_out, c_in] V[xi] [c_in, tiles]
                let mm = gemm_per_position(
                    (&u, s.c_in, a2 * s.c_in, 1),
                    &v,
                    (a2, s.c_out, s.c_in, grid.total()),
                );
                drop(v);
                scatter_tiles(&mm, (s.c_out, g.output), [0, 0], grid, Scatter::Output, yg);
            }
        }
        new_tensor(y, [s.n, s.c_out, g.output[0], g.output[1]])
    }

    fn winograd_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        g: ConvGeometry,
        need_x: bool,
        need_weight: bool,
    ) -> (Option<FloatTensor<Self>>, Option<FloatTensor<Self>>) {
        let (x, weight, dy) = (contiguous(x), contiguous(weight), contiguous(output_grad));
        let s = Plan::new(&x, &weight, &g);
        let (t, a2, per, plane_in, plane_out) = (s.t, s.a2, s.per, s.plane_in, s.plane_out);
        let u = need_x.then(|| transform_weight(slice(&weight), (s.c_out, s.c_in), t));
        let (xs, dys) = (slice(&x), slice(&dy));
        let pairs = s.c_out * s.c_in;
        let mut dx = if need_x {
            vec![0.0f32; s.n * plane_in]
        } else {
            Vec::new()
        };
        let mut du = if need_weight {
            Some(Scratch::take(a2 * pairs))
        } else {
            None
        };
        // dU is written by the first group's GEMMs and accumulated by the others (no zeroing
        // pass over it: for 512 channels it is 36 MiB).
        let mut du_written = false;
        for first in (0..s.n).step_by(per) {
            let count = per.min(s.n - first);
            let grid = TileGrid::new(count, g.output, t.m);
            let tiles = grid.total();
            if tiles == 0 {
                break;
            }
            let dyg = &dys[first * plane_out..][..count * plane_out];
            // dM = A dY A^T per tile: [c_out][xi][tiles].
            let dm = gather_tiles(dyg, (s.c_out, g.output), [0, 0], grid, Gather::OutputGrad);
            if let Some(u) = &u {
                // dV[xi] [c_in, tiles] = U[xi]^T [c_in, c_out] dM[xi] [c_out, tiles]
                let dv = gemm_per_position(
                    (u, s.c_in, 1, a2 * s.c_in),
                    &dm,
                    (a2, s.c_in, s.c_out, tiles),
                );
                // dX = sum over tiles of B dV B^T, cropped at the padding.
                let dxg = &mut dx[first * plane_in..][..count * plane_in];
                scatter_tiles(
                    &dv,
                    (s.c_in, g.input),
                    g.padding,
                    grid,
                    Scatter::InputGrad,
                    dxg,
                );
            }
            if let Some(du) = du.as_mut().filter(|_| pairs > 0) {
                let xg = &xs[first * plane_in..][..count * plane_in];
                let v = gather_tiles(xg, (s.c_in, g.input), g.padding, grid, Gather::Input);
                // dU[xi] [c_out, c_in] += dM[xi] [c_out, tiles] V[xi]^T [tiles, c_in], groups in
                // order.
                du.par_chunks_mut(pairs).enumerate().for_each(|(xi, dst)| {
                    gemm_f32(
                        dst,
                        du_written,
                        (s.c_out, s.c_in, tiles),
                        &dm[xi * tiles..],
                        (a2 * tiles, 1),
                        &v[xi * tiles..],
                        (1, a2 * tiles),
                    );
                });
                du_written = true;
            }
        }
        if let (Some(du), false) = (du.as_mut(), du_written) {
            // No tiles (an empty batch or output): the gradient is zero.
            du.fill(0.0);
        }
        let dx = need_x.then(|| new_tensor(dx, [s.n, s.c_in, g.input[0], g.input[1]]));
        let dw = du.map(|du| {
            new_tensor(
                weight_from_transform(&du, (s.c_out, s.c_in), t),
                [s.c_out, s.c_in, 3, 3],
            )
        });
        (dx, dw)
    }
}

impl<B: Backend + WinogradConv2d, C: CheckpointStrategy> WinogradConv2d for Autodiff<B, C> {
    fn winograd_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct WinogradConv2dBackward;

        impl<B: Backend + WinogradConv2d> Backward<B, 2> for WinogradConv2dBackward {
            // Input, weight, geometry.
            type State = (
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
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
                let (x, weight, geometry) = ops.state;
                let (dx, dw) = B::winograd_conv2d_backward(
                    x,
                    weight,
                    grad,
                    geometry,
                    node_x.is_some(),
                    node_weight.is_some(),
                );
                if let (Some(node), Some(dx)) = (node_x, dx) {
                    grads.register::<B>(node.id, dx);
                }
                if let (Some(node), Some(dw)) = (node_weight, dw) {
                    grads.register::<B>(node.id, dw);
                }
            }
        }

        let nodes = [x.node(), weight.node()];
        let (x, weight) = (x.into_primitive(), weight.into_primitive());
        match WinogradConv2dBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = B::winograd_conv2d(x.clone(), weight.clone(), geometry);
                prep.finish((x, weight, geometry), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::winograd_conv2d(x, weight, geometry)),
        }
    }

    fn winograd_conv2d_backward(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _output_grad: FloatTensor<Self>,
        _geometry: ConvGeometry,
        _need_x: bool,
        _need_weight: bool,
    ) -> (Option<FloatTensor<Self>>, Option<FloatTensor<Self>>) {
        unreachable!("the Winograd convolution's gradients are not themselves differentiated")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Dispatch;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::prelude::*;
    use burn::tensor::{Distribution, Tolerance};

    /// Output, input and weight gradients of the Winograd kernels (called directly, so the
    /// routing in `conv2d` cannot hide them) against burn's `Conv2d::forward`, on flex with
    /// autodiff; returns the tiling used.
    fn compare(c_in: usize, c_out: usize, input: [usize; 2], pads: [usize; 4], n: usize) -> usize {
        let device = Device::flex().autodiff();
        let [top, left, bottom, right] = pads;
        let conv = Conv2dConfig::new([c_in, c_out], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(top, left, bottom, right))
            .with_bias(false)
            .init(&device);
        let x0 = Tensor::<4>::random(
            [n, c_in, input[0], input[1]],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let output = [input[0] + top + bottom - 2, input[1] + left + right - 2];
        let upstream = Tensor::<4>::random(
            [n, c_out, output[0], output[1]],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let geometry = ConvGeometry {
            stride: [1, 1],
            padding: [top, left],
            input,
            output,
        };
        let run = |ours: bool| {
            let x = x0.clone().detach().require_grad();
            let y = if ours {
                Tensor::<4>::from_dispatch(<Dispatch as WinogradConv2d>::winograd_conv2d(
                    x.clone().into_dispatch(),
                    conv.weight.val().into_dispatch(),
                    geometry,
                ))
            } else {
                conv.forward(x.clone())
            };
            let grads = (y.clone() * upstream.clone()).sum().backward();
            (
                y.into_data(),
                x.grad(&grads).unwrap().into_data(),
                conv.weight.val().grad(&grads).unwrap().into_data(),
            )
        };
        let (a, b) = (run(true), run(false));
        let tol = Tolerance::<f32>::absolute(1e-3).set_relative(1e-3);
        a.0.assert_approx_eq::<f32>(&b.0, tol);
        a.1.assert_approx_eq::<f32>(&b.1, tol);
        a.2.assert_approx_eq::<f32>(&b.2, tol);
        tiling_for(output).m
    }

    #[test]
    fn matches_burn_with_f4x4_tiles_partial_tiles_and_padding() {
        // 9x8 output: F(4x4) with partial tiles at the bottom and right.
        assert_eq!(compare(16, 17, [9, 8], [1, 1, 1, 1], 2), 4);
        // ResNet's 4x4 maps: one tile per image.
        assert_eq!(compare(16, 16, [4, 4], [1, 1, 1, 1], 3), 4);
        // Asymmetric padding and none.
        assert_eq!(compare(17, 16, [11, 10], [0, 2, 1, 0], 2), 4);
        assert_eq!(compare(16, 18, [10, 12], [0, 0, 0, 0], 1), 4);
    }

    #[test]
    fn matches_burn_with_several_images_per_transform_chunk() {
        // Few channels: one group holds all 9 images, the transforms run on chunks of 2 images
        // (the last one alone), F(4x4) on 8x8 and F(2x2) on 2x2 outputs.
        assert_eq!(compare(2, 3, [8, 8], [1, 1, 1, 1], 9), 4);
        assert_eq!(compare(3, 2, [2, 2], [1, 1, 1, 1], 9), 2);
    }

    #[test]
    fn matches_burn_with_f2x2_tiles() {
        // 2x2 and 6x6 outputs pick F(2x2).
        assert_eq!(compare(16, 16, [2, 2], [1, 1, 1, 1], 3), 2);
        assert_eq!(compare(18, 16, [6, 6], [1, 1, 1, 1], 2), 2);
        assert_eq!(compare(16, 16, [7, 3], [0, 1, 1, 0], 2), 2);
    }

    /// Largest difference from the im2col kernels (float32 GEMMs of the direct sums) relative
    /// to the largest magnitude, on a ResNet-sized layer: the output and both gradients.
    fn relative_errors(channels: usize, side: usize) -> [f32; 3] {
        use super::super::conv2d::Im2colConv2d;
        let device = Device::flex();
        let x = Tensor::<4>::random(
            [4, channels, side, side],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let std = (2.0 / (9.0 * channels as f64)).sqrt();
        let w = Tensor::<4>::random(
            [channels, channels, 3, 3],
            Distribution::Normal(0.0, std),
            &device,
        );
        let dy = Tensor::<4>::random(
            [4, channels, side, side],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let g = ConvGeometry {
            stride: [1, 1],
            padding: [1, 1],
            input: [side, side],
            output: [side, side],
        };
        let (xd, wd, dyd) = (x.into_dispatch(), w.into_dispatch(), dy.into_dispatch());
        let ours = [
            Dispatch::winograd_conv2d(xd.clone(), wd.clone(), g),
            {
                let (dx, dw) = Dispatch::winograd_conv2d_backward(
                    xd.clone(),
                    wd.clone(),
                    dyd.clone(),
                    g,
                    true,
                    true,
                );
                let _ = &dw;
                dx.unwrap()
            },
            Dispatch::winograd_conv2d_backward(xd.clone(), wd.clone(), dyd.clone(), g, false, true)
                .1
                .unwrap(),
        ];
        let reference = [
            Dispatch::im2col_conv2d(xd.clone(), wd.clone(), g),
            Dispatch::im2col_conv2d_x_backward(wd.clone(), dyd.clone(), g),
            Dispatch::im2col_conv2d_weight_backward(xd, dyd, [3, 3], g),
        ];
        let mut errors = [0.0f32; 3];
        for (i, (a, b)) in ours.into_iter().zip(reference).enumerate() {
            let a = Tensor::<4>::from_dispatch(a)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let b = Tensor::<4>::from_dispatch(b)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let diff = a
                .iter()
                .zip(&b)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            errors[i] = diff / scale;
        }
        errors
    }

    #[test]
    fn rounding_stays_small_on_resnet_sized_layers() {
        // F(4x4) on 16x16 and 4x4 maps, F(2x2) on 2x2 maps; 64 to 256 channels. Random layers
        // measure 0.3e-5 to 2.4e-5 of the largest value (a wrong transform coefficient: 1e-1);
        // the bound leaves room for the draw (it was 2e-5, and one draw in a few dozen broke it).
        for (channels, side) in [(64, 16), (256, 4), (128, 2)] {
            let errors = relative_errors(channels, side);
            for (name, e) in ["output", "input gradient", "weight gradient"]
                .iter()
                .zip(errors)
            {
                assert!(
                    e < 5e-5,
                    "{channels} channels, {side}px: {name} relative error {e}"
                );
            }
        }
    }

    #[test]
    fn conv2d_routes_3x3_stride_1_here_and_matches_burn_untracked() {
        // The BYOL target (autodiff device, nothing tracked) through `conv2d`, which takes
        // the Winograd path for this layer unless SSL_CONV=im2col.
        let device = Device::flex().autodiff();
        let conv = Conv2dConfig::new([16, 16], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device)
            .no_grad();
        let x = Tensor::<4>::random([2, 16, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let tol = Tolerance::<f32>::absolute(1e-4).set_relative(1e-4);
        super::super::conv2d(&conv, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&conv.forward(x).into_data(), tol);
    }

    /// The 1-D identity behind each tiling: `A^T [(G g) ⊙ (B^T d)]` is the correlation of `d`
    /// (`alpha` values) with `g` (3 taps), `m` outputs.
    #[test]
    fn one_dimensional_identity_holds_for_both_tilings() {
        let f4 = (F4X4_BT.concat(), F4X4_AT.concat());
        let f2 = (F2X2_BT.concat(), F2X2_AT.concat());
        for (t, (bt, at)) in [(&F2X2, f2), (&F4X4, f4)] {
            let d: Vec<f32> = (0..t.alpha)
                .map(|i| (i as f32 * 0.37 - 0.8).sin())
                .collect();
            let g = [0.3f32, -1.2, 0.7];
            let gg: Vec<f32> = (0..t.alpha)
                .map(|k| (0..3).map(|i| t.g[k * 3 + i] * g[i]).sum())
                .collect();
            let bd: Vec<f32> = (0..t.alpha)
                .map(|k| (0..t.alpha).map(|i| bt[k * t.alpha + i] * d[i]).sum())
                .collect();
            for o in 0..t.m {
                let y: f32 = (0..t.alpha)
                    .map(|k| at[o * t.alpha + k] * gg[k] * bd[k])
                    .sum();
                let direct: f32 = (0..3).map(|j| d[o + j] * g[j]).sum();
                assert!(
                    (y - direct).abs() < 1e-5,
                    "m {} output {o}: {y} vs {direct}",
                    t.m
                );
            }
        }
    }

    #[test]
    fn tiling_picks_fewest_multiplications() {
        assert_eq!(tiling_for([32, 32]).m, 4);
        assert_eq!(tiling_for([4, 4]).m, 4);
        assert_eq!(tiling_for([2, 2]).m, 2);
        assert_eq!(tiling_for([6, 6]).m, 2);
        assert_eq!(tiling_for([1, 1]).m, 2);
    }

    #[test]
    fn weight_transform_and_its_adjoint_agree() {
        // <transform(w), du> == <w, adjoint(du)> for random w and du.
        for t in [&F2X2, &F4X4] {
            let (c_out, c_in, a2) = (3, 2, t.alpha * t.alpha);
            let w: Vec<f32> = (0..c_out * c_in * 9)
                .map(|i| (i as f32 * 0.71).cos())
                .collect();
            let du: Vec<f32> = (0..a2 * c_out * c_in)
                .map(|i| (i as f32 * 0.43).sin())
                .collect();
            let u = transform_weight(&w, (c_out, c_in), t);
            let dw = weight_from_transform(&du, (c_out, c_in), t);
            // u is [c_out][xi][c_in], du [xi][c_out][c_in].
            let mut lhs = 0.0f32;
            for co in 0..c_out {
                for xi in 0..a2 {
                    for ci in 0..c_in {
                        lhs += u[(co * a2 + xi) * c_in + ci] * du[(xi * c_out + co) * c_in + ci];
                    }
                }
            }
            let rhs: f32 = w.iter().zip(&dw).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }
}
