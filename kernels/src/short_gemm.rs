//! Matrix products with one short dimension, where `gemm`'s blocked kernels spend more time
//! packing and storing than multiplying: convolutions with at most [`MAX_SHORT`] inputs per
//! output value, above all the first convolution of an encoder (`3 x 3 x 3 = 27` for RGB
//! images, 9 for a one-channel spectrogram; also 1x1 convolutions of up to 36 channels).
//!
//! - [`short_inner_product`]: the forward `y [m, n] = w [m, k] col [k, n]` with a short inner
//!   dimension `k`. `gemm` reaches about 55 GFLOP/s per core on the small CNN's first layer
//!   (`m = 32`, `k = 27`, `n = 1,024`) here, this kernel about 93.
//! - [`short_side_weight_gradient`]: the weight gradient `dw [m, k] += dy [m, p] col [k, p]^T`
//!   whose output has a short side `k` and whose inner dimension `p` (pixels) is long: dot
//!   products of rows, about 100 GFLOP/s per core against `gemm`'s 48 on the same layer.
//!
//! Both run on AVX2 + FMA and return `false` without touching their output elsewhere (or for
//! shapes they do not take), so that the caller runs `gemm` instead. Each value's sum runs in
//! an order fixed by the shapes alone, so results are the same from run to run.

use std::cell::RefCell;
use std::mem::MaybeUninit;

/// The longest short dimension these kernels take (`k`): `3 x 3 x 4`. Measured on one core
/// against `gemm` (GFLOP/s, 256 or more columns): the forward wins at `k` 18 to 36 (95 against
/// 87-94) and loses from 48 on (97 against 100-102); the weight gradient wins at `k` 18 to 36
/// (84-85 against 55-71) and loses at 48 (85 against 100).
pub(super) const MAX_SHORT: usize = 36;

/// Output channels per register tile of [`short_inner_product`].
const ROWS: usize = 4;
/// Output columns (pixels) per register tile of [`short_inner_product`]: two 8-float vectors.
const COLUMNS: usize = 16;

thread_local! {
    /// The packed operands of [`short_inner_product`], kept between calls on each thread.
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `y [m, n] = w [m, k] col [k, n]`, all row-major (`y` and `col` rows `n` long), every value
/// of `y` written. Returns `false` (and writes nothing) unless the CPU has AVX2 and FMA,
/// `1 <= k <= MAX_SHORT` and `m` is a multiple of 4.
///
/// `w` is packed four rows at a time and `col` into 16-column strips (each read once, in
/// row order: a strip walk down 27 rows 4 KiB apart would miss L1), then each 4 x 16 tile of
/// `y` is summed over `k` in registers.
///
/// # Panics
/// When a slice is shorter than its shape.
pub(super) fn short_inner_product(
    y: &mut [MaybeUninit<f32>],
    (m, n, k): (usize, usize, usize),
    w: &[f32],
    col: &[f32],
) -> bool {
    if !(super::has_avx2() && (1..=MAX_SHORT).contains(&k) && m.is_multiple_of(ROWS)) {
        return false;
    }
    assert!(
        y.len() >= m * n && w.len() >= m * k && col.len() >= k * n,
        "short_inner_product: operands shorter than [{m}, {k}] x [{k}, {n}]"
    );
    let strips = n / COLUMNS;
    let packed_len = m * k + strips * k * COLUMNS;
    #[cfg(not(target_arch = "x86_64"))]
    return false;
    #[cfg(target_arch = "x86_64")]
    {
        let mut run = |packed: &mut Vec<f32>| {
            packed.resize(packed_len, 0.0);
            let (wp, bp) = packed.split_at_mut(m * k);
            // SAFETY: the CPU has AVX2 and FMA (checked above); the lengths are asserted above
            // and `wp`, `bp` were sized here.
            unsafe { avx2::inner_product(y, (m, n, k), w, col, wp, bp) }
        };
        // A nested call (none today) would find the buffer borrowed: it gets its own.
        PACKED.with(|cell| match cell.try_borrow_mut() {
            Ok(mut packed) => run(&mut packed),
            Err(_) => run(&mut Vec::new()),
        });
        true
    }
}

/// `dw [m, k] += dy [m, p] col [k, p]^T` (all row-major), each value a dot product of a row
/// of `dy` and a row of `col` over the `p` pixels. Returns `false` (and leaves `dw` alone)
/// unless the CPU has AVX2 and FMA and `1 <= k <= MAX_SHORT`.
///
/// Tiles of 4 rows of `dy` by 3 rows of `col` keep 12 running sums in registers, eight pixels
/// a step; the rows and columns past the last whole tile take one dot product at a time.
///
/// # Panics
/// When a slice is shorter than its shape.
pub(super) fn short_side_weight_gradient(
    dw: &mut [f32],
    (m, k, p): (usize, usize, usize),
    dy: &[f32],
    col: &[f32],
) -> bool {
    if !(super::has_avx2() && (1..=MAX_SHORT).contains(&k)) {
        return false;
    }
    assert!(
        dw.len() >= m * k && dy.len() >= m * p && col.len() >= k * p,
        "short_side_weight_gradient: operands shorter than [{m}, {p}] x [{k}, {p}]^T"
    );
    #[cfg(not(target_arch = "x86_64"))]
    return false;
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the CPU has AVX2 and FMA (checked above); the lengths are asserted above.
        unsafe { avx2::weight_gradient(dw, (m, k, p), dy, col) }
        true
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{COLUMNS, ROWS};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// See [`super::short_inner_product`].
    ///
    /// # Safety
    /// AVX2 and FMA; `y`, `w`, `col` hold their shapes; `wp` holds `m * k` values and `bp`
    /// `n / 16 * k * 16`; `m` is a multiple of 4.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn inner_product(
        y: &mut [MaybeUninit<f32>],
        (m, n, k): (usize, usize, usize),
        w: &[f32],
        col: &[f32],
        wp: &mut [f32],
        bp: &mut [f32],
    ) {
        let strips = n / COLUMNS;
        // w as [m / 4][k][4]: a tile's four weights of one k side by side.
        for g in 0..m / ROWS {
            for kk in 0..k {
                for r in 0..ROWS {
                    wp[(g * k + kk) * ROWS + r] = w[(g * ROWS + r) * k + kk];
                }
            }
        }
        // col as [strips][k][16], filled row by row of col (sequential reads).
        for kk in 0..k {
            let row = &col[kk * n..kk * n + strips * COLUMNS];
            for (s, src) in row.chunks_exact(COLUMNS).enumerate() {
                bp[(s * k + kk) * COLUMNS..][..COLUMNS].copy_from_slice(src);
            }
        }
        let yp = y.as_mut_ptr().cast::<f32>();
        for g in 0..m / ROWS {
            let wg = &wp[g * k * ROWS..(g + 1) * k * ROWS];
            for s in 0..strips {
                let bs = &bp[s * k * COLUMNS..(s + 1) * k * COLUMNS];
                // SAFETY: (for the block) AVX2 and FMA by the contract; every load reads
                // inside `wg` (k * 4 values) or `bs` (k * 16), every store inside row
                // g * 4 + r < m of `y`, columns s * 16 .. s * 16 + 16 <= n.
                unsafe {
                    let mut acc = [_mm256_setzero_ps(); 8];
                    let (mut a, mut b) = (wg.as_ptr(), bs.as_ptr());
                    for _ in 0..k {
                        let b0 = _mm256_loadu_ps(b);
                        let b1 = _mm256_loadu_ps(b.add(8));
                        for r in 0..ROWS {
                            let v = _mm256_broadcast_ss(&*a.add(r));
                            acc[2 * r] = _mm256_fmadd_ps(v, b0, acc[2 * r]);
                            acc[2 * r + 1] = _mm256_fmadd_ps(v, b1, acc[2 * r + 1]);
                        }
                        a = a.add(ROWS);
                        b = b.add(COLUMNS);
                    }
                    for r in 0..ROWS {
                        let out = yp.add((g * ROWS + r) * n + s * COLUMNS);
                        _mm256_storeu_ps(out, acc[2 * r]);
                        _mm256_storeu_ps(out.add(8), acc[2 * r + 1]);
                    }
                }
            }
        }
        // The last n % 16 columns, one value at a time (the same order over k).
        for i in 0..m {
            for j in strips * COLUMNS..n {
                let mut sum = 0.0f32;
                for kk in 0..k {
                    sum = w[i * k + kk].mul_add(col[kk * n + j], sum);
                }
                y[i * n + j].write(sum);
            }
        }
    }

    /// The eight lanes of `v` summed in lane order.
    #[target_feature(enable = "avx2,fma")]
    fn lane_sum(v: __m256) -> f32 {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.iter().sum()
    }

    /// `dot(a[..p], b[..p])`: eight lanes of running sums, the lanes summed in order, then
    /// the last `p % 8` products.
    #[target_feature(enable = "avx2,fma")]
    fn dot(a: &[f32], b: &[f32], p: usize) -> f32 {
        let (a, b) = (&a[..p], &b[..p]);
        let full = p / 8 * 8;
        let mut acc = _mm256_setzero_ps();
        for t in (0..full).step_by(8) {
            // SAFETY: t + 8 <= full <= p, the length of both slices.
            unsafe {
                let x = _mm256_loadu_ps(a.as_ptr().add(t));
                acc = _mm256_fmadd_ps(x, _mm256_loadu_ps(b.as_ptr().add(t)), acc);
            }
        }
        let mut sum = lane_sum(acc);
        for t in full..p {
            sum = a[t].mul_add(b[t], sum);
        }
        sum
    }

    /// See [`super::short_side_weight_gradient`].
    ///
    /// # Safety
    /// AVX2 and FMA; `dw`, `dy`, `col` hold their shapes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weight_gradient(
        dw: &mut [f32],
        (m, k, p): (usize, usize, usize),
        dy: &[f32],
        col: &[f32],
    ) {
        const TILE_ROWS: usize = 4;
        const TILE_COLUMNS: usize = 3;
        let (m_tiled, k_tiled) = (m / TILE_ROWS * TILE_ROWS, k / TILE_COLUMNS * TILE_COLUMNS);
        let full = p / 8 * 8;
        for g in (0..m_tiled).step_by(TILE_ROWS) {
            for h in (0..k_tiled).step_by(TILE_COLUMNS) {
                let d: [&[f32]; TILE_ROWS] = std::array::from_fn(|r| &dy[(g + r) * p..][..p]);
                let c: [&[f32]; TILE_COLUMNS] = std::array::from_fn(|q| &col[(h + q) * p..][..p]);
                let mut acc = [_mm256_setzero_ps(); TILE_ROWS * TILE_COLUMNS];
                for t in (0..full).step_by(8) {
                    // SAFETY: t + 8 <= full <= p, the length of every row slice.
                    unsafe {
                        let cv: [__m256; TILE_COLUMNS] =
                            std::array::from_fn(|q| _mm256_loadu_ps(c[q].as_ptr().add(t)));
                        for r in 0..TILE_ROWS {
                            let dv = _mm256_loadu_ps(d[r].as_ptr().add(t));
                            for q in 0..TILE_COLUMNS {
                                acc[r * TILE_COLUMNS + q] =
                                    _mm256_fmadd_ps(dv, cv[q], acc[r * TILE_COLUMNS + q]);
                            }
                        }
                    }
                }
                for r in 0..TILE_ROWS {
                    for q in 0..TILE_COLUMNS {
                        let mut sum = lane_sum(acc[r * TILE_COLUMNS + q]);
                        for t in full..p {
                            sum = d[r][t].mul_add(c[q][t], sum);
                        }
                        dw[(g + r) * k + h + q] += sum;
                    }
                }
            }
        }
        // The rows and columns outside whole tiles, one dot product each.
        for i in 0..m {
            let columns = if i < m_tiled { k_tiled..k } else { 0..k };
            for j in columns {
                dw[i * k + j] += dot(&dy[i * p..], &col[j * p..], p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `a [m, k] b [k, n]` in f64.
    fn reference(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize)) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum();
            }
        }
        out
    }

    fn close(got: &[f32], want: &[f64], k: usize) {
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            // Products of values below 1 in magnitude: float32 rounding grows with k.
            assert!(
                (g as f64 - w).abs() <= 1e-6 * k as f64 + 1e-6,
                "value {i}: {g} against {w}"
            );
        }
    }

    #[test]
    fn inner_product_matches_a_reference_with_partial_strips() {
        if !crate::has_avx2() {
            eprintln!("no AVX2 here: the short GEMMs decline and gemm runs instead");
            return;
        }
        for (m, n, k) in [
            (32, 1024, 27),
            (4, 37, 1),
            (8, 16, MAX_SHORT),
            (12, 5, 9),
            (64, 300, 27),
        ] {
            let (w, col) = (values(m * k, 1), values(k * n, 2));
            let mut y = vec![MaybeUninit::new(f32::NAN); m * n];
            assert!(short_inner_product(&mut y, (m, n, k), &w, &col));
            // SAFETY: the kernel wrote every value (they were NaN before).
            let y = unsafe { crate::assume_written(&y) };
            close(y, &reference(&w, &col, (m, n, k)), k);
        }
    }

    #[test]
    fn inner_product_declines_shapes_it_does_not_take() {
        let mut y = vec![MaybeUninit::new(7.0f32); 6 * 4];
        // m not a multiple of 4, k past MAX_SHORT, k = 0: gemm's work, `y` untouched.
        assert!(!short_inner_product(
            &mut y,
            (6, 4, 3),
            &[0.0; 18],
            &[0.0; 12]
        ));
        let long = vec![0.0f32; 4 * (MAX_SHORT + 1)];
        assert!(!short_inner_product(
            &mut y,
            (4, 1, MAX_SHORT + 1),
            &long,
            &long
        ));
        assert!(!short_inner_product(&mut y, (4, 4, 0), &[], &[]));
        // SAFETY: initialized above.
        assert!(
            unsafe { crate::assume_written(&y) }
                .iter()
                .all(|&v| v == 7.0)
        );
    }

    #[test]
    fn weight_gradient_adds_dot_products_on_and_off_whole_tiles() {
        if !crate::has_avx2() {
            eprintln!("no AVX2 here: the short GEMMs decline and gemm runs instead");
            return;
        }
        for (m, k, p) in [
            (32, 27, 1024),
            (5, 4, 13),
            (4, 3, 8),
            (7, MAX_SHORT, 100),
            (1, 1, 3),
        ] {
            let (dy, col) = (values(m * p, 3), values(k * p, 4));
            let start = values(m * k, 5);
            let mut dw = start.clone();
            assert!(short_side_weight_gradient(&mut dw, (m, k, p), &dy, &col));
            // dy col^T as a product of [m, p] and [p, k].
            let col_t: Vec<f32> = (0..p * k).map(|i| col[(i % k) * p + i / k]).collect();
            let want: Vec<f64> = reference(&dy, &col_t, (m, k, p))
                .iter()
                .zip(&start)
                .map(|(d, &s)| d + s as f64)
                .collect();
            close(&dw, &want, p);
        }
    }

    #[test]
    fn weight_gradient_declines_a_long_side() {
        let mut dw = vec![1.0f32; MAX_SHORT + 1];
        let ones = vec![1.0f32; MAX_SHORT + 1];
        assert!(!short_side_weight_gradient(
            &mut dw,
            (1, MAX_SHORT + 1, 1),
            &ones,
            &ones
        ));
        assert!(dw.iter().all(|&v| v == 1.0));
    }
}
