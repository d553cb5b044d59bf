//! What the convolution kernels share, below both im2col ([`super::conv2d`]) and Winograd
//! ([`super::winograd`]): the geometry of a convolution and the single-threaded float32 GEMM
//! (the `gemm` crate, which burn-flex uses too, or ours on the AVX-512 path, [`crate::cpu_path`]).

use std::mem::MaybeUninit;

/// Where the kernel sits on the input: stride and leading padding (pixels, height then width),
/// and the input and output sizes (pixels). Trailing padding is implied by `output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// `[stride_h, stride_w]`.
    pub stride: [usize; 2],
    /// Zero padding before the first row and column, `[top, left]`.
    pub padding: [usize; 2],
    /// Input `[height, width]`.
    pub input: [usize; 2],
    /// Output `[height, width]`.
    pub output: [usize; 2],
}

/// `dst [m, n] = (read_dst ? dst : 0) + lhs [m, k] rhs [k, n]`, row-major `dst`; `lhs` and `rhs`
/// given by their (row, column) strides in elements. Single-threaded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_f32(
    dst: &mut [f32],
    read_dst: bool,
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    assert!(dst.len() >= m * n);
    // SAFETY: `dst` holds `m * n` values (asserted) and does not alias `lhs` or `rhs` (a
    // `&mut` and two `&`).
    unsafe {
        gemm_raw(
            dst.as_mut_ptr(),
            read_dst,
            (m, n, k),
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
        )
    }
}

/// [`gemm_f32`] into an uninitialized `dst` (never read): every one of its first `m * n`
/// values is written (zeros when `k == 0`).
pub(crate) fn gemm_f32_into(
    dst: &mut [MaybeUninit<f32>],
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    assert!(dst.len() >= m * n);
    // SAFETY: as in `gemm_f32`; with `read_dst` false gemm only writes `dst`.
    unsafe {
        gemm_raw(
            dst.as_mut_ptr().cast::<f32>(),
            false,
            (m, n, k),
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
        )
    }
}

/// # Safety
/// `dst` points to `m * n` writable floats (readable too when `read_dst`), not overlapping
/// `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    dst: *mut f32,
    read_dst: bool,
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above keep every index read inside `lhs` and `rhs`; `dst` is the
    // caller's contract; the AVX-512 path is chosen only where the CPU has it.
    unsafe {
        if m >= crate::packed_gemm::MIN_ROWS
            && crate::cpu_path::path() == crate::cpu_path::CpuPath::Avx512
        {
            crate::packed_gemm::gemm(
                crate::packed_gemm::Width::Avx512,
                dst,
                read_dst,
                (m, n, k),
                lhs,
                (lhs_rs, lhs_cs),
                rhs,
                (rhs_rs, rhs_cs),
            );
        } else {
            crate::packed_gemm::gemm_crate(
                dst,
                read_dst,
                (m, n, k),
                lhs,
                (lhs_rs, lhs_cs),
                rhs,
                (rhs_rs, rhs_cs),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu_path::{self, CpuPath};
    use crate::packed_gemm::{MIN_ROWS, Width, gemm, gemm_crate};

    /// `gemm_f32` on `(m, n, k)` and what each candidate GEMM gives there: (dispatched, ours
    /// (scalar width: the bits of every width), the `gemm` crate's).
    fn candidates((m, n, k): (usize, usize, usize)) -> [Vec<u32>; 3] {
        let lhs: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let rhs: Vec<f32> = (0..k * n)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 5.0)
            .collect();
        let mut out = [vec![0f32; m * n], vec![0f32; m * n], vec![0f32; m * n]];
        super::gemm_f32(&mut out[0], false, (m, n, k), &lhs, (k, 1), &rhs, (n, 1));
        // SAFETY: each output holds m * n floats; the strides stay inside the operands.
        unsafe {
            gemm(
                Width::Scalar,
                out[1].as_mut_ptr(),
                false,
                (m, n, k),
                &lhs,
                (k, 1),
                &rhs,
                (n, 1),
            );
            gemm_crate(
                out[2].as_mut_ptr(),
                false,
                (m, n, k),
                &lhs,
                (k, 1),
                &rhs,
                (n, 1),
            );
        }
        out.map(|v| v.iter().map(|x| x.to_bits()).collect())
    }

    #[test]
    fn the_avx512_path_runs_our_gemm_and_the_others_the_gemm_crate() {
        let [dispatched, ours, theirs] = candidates((MIN_ROWS + 32, 200, 700));
        assert_ne!(
            ours, theirs,
            "the two GEMMs must sum differently for this test to tell them apart"
        );
        if cpu_path::path() == CpuPath::Avx512 {
            assert_eq!(dispatched, ours, "the avx512 path must run our GEMM");
        } else {
            assert_eq!(
                dispatched,
                theirs,
                "the {} path must run the gemm crate",
                cpu_path::path().name()
            );
        }
        // Fewer rows than MIN_ROWS: the gemm crate on every path.
        let [dispatched, _, theirs] = candidates((MIN_ROWS / 4, 200, 700));
        assert_eq!(dispatched, theirs);
    }
}
