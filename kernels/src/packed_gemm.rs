//! The f32 GEMMs of the convolutions. Ours: packed, single-threaded, `C [m, n] (+)= A [m, k]
//! B [k, n]`, with one micro-kernel per vector width: AVX-512 (12 x 32 tiles), AVX2 (6 x 16) and
//! a scalar one (4 x 8, with `f32::mul_add`). It runs the GEMMs of the
//! [`CpuPath::Avx512`](crate::cpu_path::CpuPath) path with at least [`MIN_ROWS`] rows; the
//! other paths, and smaller GEMMs, call the `gemm` crate ([`gemm_crate`], its AVX2 kernels on
//! any x86 CPU with them). The `gemm` crate has AVX-512 kernels too, but behind its `x86-v4`
//! feature, which turns them on for every AVX-512 CPU at once: on an AMD Zen 4 (AVX-512
//! double-pumped) that made the small CNN's step 7% slower; here the choice is per CPU
//! ([`crate::cpu_path`]).
//!
//! The layout is the usual one (Goto and van de Geijn, "Anatomy of high-performance matrix
//! multiplication", ACM TOMS 2008): blocks of `B` (`KC x NC`) packed into `NR`-column panels,
//! blocks of `A` (`MC x KC`) into `MR`-row panels, and a micro-kernel that sums one `MR x NR`
//! tile over `KC` in registers.
//!
//! Every width of ours gives the same bits: each value of `C` is summed over `k` in blocks of
//! [`KC`], within a block in order from zero with fused multiply-adds, and each block's sum is
//! added to `C` in block order; the tests hold the vector kernels to the scalar one bit for bit.
//! The `gemm` crate sums in another order, so the `avx512` path's results differ from the other
//! paths' by float rounding.

use std::cell::RefCell;

/// The fewest rows (`m`) a GEMM of the AVX-512 path needs to run on our kernel rather than the
/// `gemm` crate: below it, the last 12-row panel's padding is a large share of the work (16
/// rows, the audio encoder's channels, compute 24), and the calibration does not time such
/// shapes.
pub(crate) const MIN_ROWS: usize = 64;

/// Depth of one packed block (values of `k` summed in registers before `C` is touched). Part
/// of the arithmetic (see the module docs): the same for every kernel.
const KC: usize = 256;
/// Columns of `C` per packed block of `B` (`KC x NC` floats: 1 MiB, in L2).
const NC: usize = 1024;
/// Rows of `C` per packed block of `A`, a multiple of every kernel's `MR`.
const MC: usize = 96;

thread_local! {
    /// The packed blocks of `A` and `B`, kept between calls on each thread.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A micro-kernel: sums one tile over `kc` from packed panels `a` (`kc x MR`, row index
/// fastest) and `b` (`kc x NR`, column fastest), then stores (or adds, when `accumulate`) the
/// first `rows x cols` of it at `c` (row stride `ldc`).
type MicroKernel = unsafe fn(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
);

/// Which micro-kernel [`gemm`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    /// 512-bit vectors (AVX-512F).
    Avx512,
    /// 256-bit vectors (AVX2 + FMA).
    Avx2,
    /// No vectors: `f32::mul_add` (the reference of the tests; slow where the CPU has no FMA,
    /// so no path runs it).
    #[cfg_attr(not(test), allow(dead_code))]
    Scalar,
}

impl Width {
    /// Whether this CPU runs `self`.
    pub(crate) fn available(self) -> bool {
        match self {
            Width::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Width::Avx2 => crate::cpu_has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Width::Avx512 => crate::cpu_has_avx512(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// `dst [m, n] = lhs [m, k] rhs [k, n]` (`+=` when `read_dst`), `dst` row-major with row
/// stride `n`; `lhs` and `rhs` are read through their (row, column) strides.
///
/// # Safety
/// `dst` points to `m * n` writable floats (readable too when `read_dst`) that overlap neither
/// operand; `width` is [`Width::available`]; every index the strides reach is inside `lhs` and
/// `rhs` (checked by the caller, [`crate::conv_shared`]).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    width: Width,
    dst: *mut f32,
    read_dst: bool,
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    // SAFETY: forwarded from the caller; each kernel runs only where `width` is available.
    unsafe {
        match width {
            #[cfg(target_arch = "x86_64")]
            Width::Avx512 => blocked::<12, 32>(
                avx512::kernel,
                dst,
                read_dst,
                (m, n, k),
                (lhs, lhs_strides),
                (rhs, rhs_strides),
            ),
            #[cfg(target_arch = "x86_64")]
            Width::Avx2 => blocked::<6, 16>(
                avx2::kernel,
                dst,
                read_dst,
                (m, n, k),
                (lhs, lhs_strides),
                (rhs, rhs_strides),
            ),
            _ => blocked::<4, 8>(
                scalar_kernel::<4, 8>,
                dst,
                read_dst,
                (m, n, k),
                (lhs, lhs_strides),
                (rhs, rhs_strides),
            ),
        }
    }
}

/// The `gemm` crate's single-threaded GEMM (its own choice of kernels), as `conv_shared::gemm_raw` (the
/// GEMM of the `avx2` and `scalar` paths).
///
/// # Safety
/// As [`gemm`], and every index the strides reach is inside `lhs` and `rhs`.
pub(crate) unsafe fn gemm_crate(
    dst: *mut f32,
    read_dst: bool,
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    // SAFETY: the caller's contract.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            read_dst,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if read_dst { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            ::gemm::Parallelism::None,
        );
    }
}

/// The blocked loops around micro-kernel `kernel` of tile `MR x NR` (see [`gemm`]).
///
/// # Safety
/// As [`gemm`], and `kernel` runs on this CPU.
unsafe fn blocked<const MR: usize, const NR: usize>(
    kernel: MicroKernel,
    dst: *mut f32,
    read_dst: bool,
    (m, n, k): (usize, usize, usize),
    (lhs, (lhs_rs, lhs_cs)): (&[f32], (usize, usize)),
    (rhs, (rhs_rs, rhs_cs)): (&[f32], (usize, usize)),
) {
    const { assert!(MC.is_multiple_of(MR) && NC.is_multiple_of(NR)) };
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !read_dst {
            // SAFETY: `dst` holds `m * n` writable floats.
            unsafe { std::ptr::write_bytes(dst, 0, m * n) };
        }
        return;
    }
    PACKED.with(|packed| {
        let (pa, pb) = &mut *packed.borrow_mut();
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            let col_panels = nc.div_ceil(NR);
            for (block, pc) in (0..k).step_by(KC).enumerate() {
                let kc = KC.min(k - pc);
                // B's block, NR columns at a time, zero past column `nc`.
                pb.clear();
                pb.resize(col_panels * kc * NR, 0.0);
                for (panel, out) in pb.chunks_exact_mut(kc * NR).enumerate() {
                    let j0 = jc + panel * NR;
                    let cols = NR.min(n - j0);
                    pack_panel::<NR>(out, rhs, (pc, j0), (kc, cols), (rhs_rs, rhs_cs));
                }
                let accumulate = read_dst || block > 0;
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let row_panels = mc.div_ceil(MR);
                    // A's block, MR rows at a time (row index fastest), zero past row `mc`.
                    pa.clear();
                    pa.resize(row_panels * kc * MR, 0.0);
                    for (panel, out) in pa.chunks_exact_mut(kc * MR).enumerate() {
                        let i0 = ic + panel * MR;
                        let rows = MR.min(m - i0);
                        // A's rows are B's columns of the transposed product.
                        pack_panel::<MR>(out, lhs, (pc, i0), (kc, rows), (lhs_cs, lhs_rs));
                    }
                    for jp in 0..col_panels {
                        let j0 = jc + jp * NR;
                        let cols = NR.min(n - j0);
                        for ip in 0..row_panels {
                            let i0 = ic + ip * MR;
                            let rows = MR.min(m - i0);
                            // SAFETY: the panels hold `kc * MR` and `kc * NR` floats; the
                            // tile's `rows x cols` lie inside `dst` (row stride `n`).
                            unsafe {
                                kernel(
                                    kc,
                                    pa.as_ptr().add(ip * kc * MR),
                                    pb.as_ptr().add(jp * kc * NR),
                                    dst.add(i0 * n + j0),
                                    n,
                                    rows,
                                    cols,
                                    accumulate,
                                );
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Packs `kc x width` values of a matrix `src` (element `(p, j)` at `p * p_stride + j *
/// j_stride`) starting at `(p0, j0)` into `out` (`kc x W`, `j` fastest; `out` is zero past
/// `width`), reading along whichever index is contiguous in `src`: the operands of the
/// convolutions' backward passes are transposed views.
#[inline(always)]
fn pack_panel<const W: usize>(
    out: &mut [f32],
    src: &[f32],
    (p0, j0): (usize, usize),
    (kc, width): (usize, usize),
    (p_stride, j_stride): (usize, usize),
) {
    if j_stride == 1 {
        for (p, row) in out.chunks_exact_mut(W).enumerate() {
            let base = (p0 + p) * p_stride + j0;
            row[..width].copy_from_slice(&src[base..base + width]);
        }
    } else {
        for j in 0..width {
            let column = &src[(j0 + j) * j_stride + p0 * p_stride..];
            if p_stride == 1 {
                for (p, &v) in column[..kc].iter().enumerate() {
                    out[p * W + j] = v;
                }
            } else {
                for p in 0..kc {
                    out[p * W + j] = column[p * p_stride];
                }
            }
        }
    }
}

/// Stores (or adds) the first `rows x cols` of `tile` (`MR x NR`, row-major) at `c`.
///
/// # Safety
/// `c` points to `rows` rows of `cols` writable floats, `ldc` apart.
#[inline(always)]
unsafe fn store_part<const MR: usize, const NR: usize>(
    tile: &[[f32; NR]; MR],
    c: *mut f32,
    ldc: usize,
    (rows, cols): (usize, usize),
    accumulate: bool,
) {
    for (r, values) in tile.iter().enumerate().take(rows) {
        for (j, &v) in values.iter().enumerate().take(cols) {
            // SAFETY: inside the tile's `rows x cols` (the caller's contract).
            unsafe {
                let at = c.add(r * ldc + j);
                *at = if accumulate { *at + v } else { v };
            }
        }
    }
}

/// The scalar micro-kernel: the reference arithmetic (see the module docs).
///
/// # Safety
/// As [`MicroKernel`].
#[allow(clippy::too_many_arguments)]
unsafe fn scalar_kernel<const MR: usize, const NR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    let mut tile = [[0f32; NR]; MR];
    for p in 0..kc {
        for (r, row) in tile.iter_mut().enumerate() {
            // SAFETY: the panels hold `kc * MR` and `kc * NR` floats.
            let av = unsafe { *a.add(p * MR + r) };
            for (j, acc) in row.iter_mut().enumerate() {
                *acc = av.mul_add(unsafe { *b.add(p * NR + j) }, *acc);
            }
        }
    }
    // SAFETY: forwarded.
    unsafe { store_part(&tile, c, ldc, (rows, cols), accumulate) };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    const MR: usize = 12;
    const NR: usize = 32;

    /// The AVX-512 micro-kernel: a 12 x 32 tile in 24 registers.
    ///
    /// # Safety
    /// As [`super::MicroKernel`], on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kernel(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        // SAFETY: the panels hold `kc * MR` and `kc * NR` floats.
        unsafe {
            for p in 0..kc {
                let b0 = _mm512_loadu_ps(b.add(p * NR));
                let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(p * MR + r));
                    acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
                }
            }
            if rows == MR && cols == NR {
                for (r, acc) in acc.iter().enumerate() {
                    for (h, &v) in acc.iter().enumerate() {
                        let at = c.add(r * ldc + 16 * h);
                        let v = if accumulate {
                            _mm512_add_ps(_mm512_loadu_ps(at), v)
                        } else {
                            v
                        };
                        _mm512_storeu_ps(at, v);
                    }
                }
            } else {
                let mut tile = [[0f32; NR]; MR];
                for (row, acc) in tile.iter_mut().zip(&acc) {
                    _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
                    _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[1]);
                }
                super::store_part(&tile, c, ldc, (rows, cols), accumulate);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    const MR: usize = 6;
    const NR: usize = 16;

    /// The AVX2 micro-kernel: a 6 x 16 tile in 12 registers.
    ///
    /// # Safety
    /// As [`super::MicroKernel`], on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kernel(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        // SAFETY: the panels hold `kc * MR` and `kc * NR` floats.
        unsafe {
            for p in 0..kc {
                let b0 = _mm256_loadu_ps(b.add(p * NR));
                let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_ps(*a.add(p * MR + r));
                    acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                }
            }
            if rows == MR && cols == NR {
                for (r, acc) in acc.iter().enumerate() {
                    for (h, &v) in acc.iter().enumerate() {
                        let at = c.add(r * ldc + 8 * h);
                        let v = if accumulate {
                            _mm256_add_ps(_mm256_loadu_ps(at), v)
                        } else {
                            v
                        };
                        _mm256_storeu_ps(at, v);
                    }
                }
            } else {
                let mut tile = [[0f32; NR]; MR];
                for (row, acc) in tile.iter_mut().zip(&acc) {
                    _mm256_storeu_ps(row.as_mut_ptr(), acc[0]);
                    _mm256_storeu_ps(row.as_mut_ptr().add(8), acc[1]);
                }
                super::store_part(&tile, c, ldc, (rows, cols), accumulate);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lhs [m, k] rhs [k, n]` in f64, and the sums of the products' magnitudes (for the error
    /// bound).
    fn reference(m: usize, n: usize, k: usize, lhs: &[f32], rhs: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (mut out, mut magnitude) = (vec![0f64; m * n], vec![0f64; m * n]);
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    let product = lhs[i * k + p] as f64 * rhs[p * n + j] as f64;
                    out[i * n + j] += product;
                    magnitude[i * n + j] += product.abs();
                }
            }
        }
        (out, magnitude)
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// `dst (+)= lhs rhs` on `width`, both operands stored transposed (column-major) when
    /// `transposed`, from a seeded `dst`.
    fn run(
        width: Width,
        (m, n, k): (usize, usize, usize),
        transposed: bool,
        read_dst: bool,
    ) -> Vec<f32> {
        let lhs = values(m * k, 1);
        let rhs = values(k * n, 2);
        let column_major = |a: &[f32], rows: usize, cols: usize| {
            let mut t = vec![0f32; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    t[c * rows + r] = a[r * cols + c];
                }
            }
            t
        };
        let (lhs, lhs_strides, rhs, rhs_strides) = if transposed {
            (
                column_major(&lhs, m, k),
                (1, m),
                column_major(&rhs, k, n),
                (1, k),
            )
        } else {
            (lhs, (k, 1), rhs, (n, 1))
        };
        let mut dst = values(m * n, 3);
        // SAFETY: `dst` holds m * n floats; the strides stay inside the operands.
        unsafe {
            gemm(
                width,
                dst.as_mut_ptr(),
                read_dst,
                (m, n, k),
                &lhs,
                lhs_strides,
                &rhs,
                rhs_strides,
            );
        }
        dst
    }

    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 1, 1),
        (12, 32, 256),
        (13, 33, 257),
        (100, 1100, 300),
        (64, 48, 576),
        (7, 5, 3),
    ];

    #[test]
    fn every_width_gives_the_scalar_kernels_bits() {
        for shape in SHAPES {
            for (transposed, read_dst) in [(false, false), (true, true), (true, false)] {
                let scalar = run(Width::Scalar, shape, transposed, read_dst);
                for width in [Width::Avx2, Width::Avx512] {
                    if !width.available() {
                        eprintln!("skipping {width:?}: not on this CPU");
                        continue;
                    }
                    let got = run(width, shape, transposed, read_dst);
                    assert!(
                        got.iter()
                            .zip(&scalar)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{width:?} differs from the scalar kernel at {shape:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn operands_without_a_contiguous_index_pack_alike() {
        // Every other value of a twice-as-wide buffer: neither stride is 1.
        let (m, n, k) = (13, 40, 70);
        let lhs = values(m * k, 1);
        let rhs = values(k * n, 2);
        let spread = |a: &[f32]| a.iter().flat_map(|&v| [v, f32::NAN]).collect::<Vec<_>>();
        let (lhs2, rhs2) = (spread(&lhs), spread(&rhs));
        for width in [Width::Scalar, Width::Avx2, Width::Avx512] {
            if !width.available() {
                eprintln!("skipping {width:?}: not on this CPU");
                continue;
            }
            let (mut plain, mut strided) = (vec![0f32; m * n], vec![0f32; m * n]);
            // SAFETY: m * n floats each; the strides stay inside the operands.
            unsafe {
                gemm(
                    width,
                    plain.as_mut_ptr(),
                    false,
                    (m, n, k),
                    &lhs,
                    (k, 1),
                    &rhs,
                    (n, 1),
                );
                gemm(
                    width,
                    strided.as_mut_ptr(),
                    false,
                    (m, n, k),
                    &lhs2,
                    (2 * k, 2),
                    &rhs2,
                    (2 * n, 2),
                );
            }
            assert!(
                plain
                    .iter()
                    .zip(&strided)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{width:?}"
            );
        }
    }

    #[test]
    fn scalar_kernel_is_a_matrix_product() {
        for (m, n, k) in SHAPES {
            let lhs = values(m * k, 1);
            let rhs = values(k * n, 2);
            let (want, magnitude) = reference(m, n, k, &lhs, &rhs);
            let start = values(m * n, 3);
            for (transposed, read_dst) in [(false, false), (false, true), (true, true)] {
                let got = run(Width::Scalar, (m, n, k), transposed, read_dst);
                for i in 0..m * n {
                    let w = want[i] + if read_dst { start[i] as f64 } else { 0.0 };
                    // Rounding of at most k + 1 additions, each within f32's epsilon.
                    let bound = (k as f64 + 1.0) * f32::EPSILON as f64 * (magnitude[i] + 1.0);
                    assert!(
                        (got[i] as f64 - w).abs() <= bound,
                        "({m}, {n}, {k}) read_dst {read_dst} at {i}: {} vs {w}",
                        got[i]
                    );
                }
            }
        }
    }

    #[test]
    fn empty_depth_zeroes_or_keeps_the_output() {
        let mut dst = vec![5f32; 6];
        // SAFETY: 6 floats; k = 0 reads no operand.
        unsafe {
            gemm(
                Width::Scalar,
                dst.as_mut_ptr(),
                true,
                (2, 3, 0),
                &[],
                (0, 1),
                &[],
                (3, 1),
            )
        };
        assert_eq!(dst, vec![5.0; 6]);
        unsafe {
            gemm(
                Width::Scalar,
                dst.as_mut_ptr(),
                false,
                (2, 3, 0),
                &[],
                (0, 1),
                &[],
                (3, 1),
            )
        };
        assert_eq!(dst, vec![0.0; 6]);
    }
}
