//! Which vector code the kernels run on this CPU, chosen once per process.
//!
//! - [`CpuPath::Avx512`]: the convolutions' GEMMs on our AVX-512 kernel
//!   (`kernels/src/packed_gemm.rs`); everything else as `Avx2`.
//! - [`CpuPath::Avx2`]: AVX2 + FMA code in our kernels (BatchNorm, im2col, Winograd's
//!   transforms, the short GEMMs) and the `gemm` crate's AVX2 kernels for the GEMMs.
//! - [`CpuPath::Scalar`]: the baseline x86-64 target everywhere in our kernels (the `gemm` crate
//!   still picks its own kernels), for CPUs without AVX2 and for testing.
//!
//! Whether AVX-512 pays is measured, not guessed from the CPU's name: on an AMD Zen 4 (AVX-512
//! executed as two 256-bit halves) the `gemm` crate's AVX-512 kernels made the small CNN's step
//! 7% slower than its AVX2 ones, while on Intel cores with two 512-bit FMA units they do twice
//! the work per cycle. So on a CPU with AVX-512F, the first kernel call times our AVX-512 GEMM
//! against the `gemm` crate's AVX2 one on a convolution's three GEMMs (forward and both
//! gradients; about 50 ms, once) and takes
//! AVX-512 only when it is at least [`AVX512_MARGIN`] faster, so that a near tie (or timings
//! disturbed by other work on the cores) does not choose it.
//!
//! The verdict is kept in `$XDG_CACHE_HOME/ssl/` (else `~/.cache/ssl/`), one file per CPU
//! model, so that every later run on this machine takes the same path without timing again: the
//! `avx512` path's GEMMs sum in another order than the `gemm` crate's, so a path that changed
//! between two runs (or between a run and its resume) would change their results by float
//! rounding. Delete the file to calibrate again.
//!
//! The environment variable `SSL_CPU_PATH` (`auto`, `avx512`, `avx2` or `scalar`) forces a
//! path, so that one machine tests every path its CPU has, and so that runs on different
//! machines take the same one. Every path is deterministic run to run; the paths agree within
//! float rounding.

use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable that forces a path.
pub const ENV: &str = "SSL_CPU_PATH";

/// How much faster our AVX-512 GEMM must be than the `gemm` crate's AVX2 one in the start-up
/// calibration for [`CpuPath::Avx512`] to be chosen: 20% (its time at most 0.8 of the other).
/// Where AVX-512 pays (two 512-bit FMA units) it takes about half the time; on Zen 4 the two
/// are within 10% of each other, and a calibration that shared the cores with another job
/// once found AVX-512 10% faster there.
pub const AVX512_MARGIN: f64 = 0.2;

/// A set of kernels, from the baseline up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuPath {
    /// Baseline x86-64 (SSE2) code in our kernels.
    Scalar,
    /// AVX2 + FMA.
    Avx2,
    /// AVX2 + FMA, and AVX-512F for the GEMMs.
    Avx512,
}

impl CpuPath {
    /// The name `SSL_CPU_PATH` takes and logs show: `scalar`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            CpuPath::Scalar => "scalar",
            CpuPath::Avx2 => "avx2",
            CpuPath::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            CpuPath::Scalar => true,
            CpuPath::Avx2 => crate::cpu_has_avx2(),
            CpuPath::Avx512 => crate::cpu_has_avx2() && crate::cpu_has_avx512(),
        }
    }

    /// The paths this CPU can run, the best first.
    pub fn available_paths() -> Vec<CpuPath> {
        [CpuPath::Avx512, CpuPath::Avx2, CpuPath::Scalar]
            .into_iter()
            .filter(|p| p.available())
            .collect()
    }
}

/// Errors of [`requested`].
#[derive(Debug, thiserror::Error)]
pub enum CpuPathError {
    /// The value is not a path's name.
    #[error("{ENV}={value}: expected auto, avx512, avx2 or scalar")]
    Unknown {
        /// The variable's value.
        value: String,
    },
    /// The CPU lacks the path's instructions.
    #[error("{ENV}={value}: this CPU cannot run it (it has {available})")]
    Unavailable {
        /// The variable's value.
        value: String,
        /// The paths it can run, comma-separated.
        available: String,
    },
}

/// The path `SSL_CPU_PATH` forces: `None` when it is unset, empty or `auto`.
///
/// # Errors
/// [`CpuPathError`] for a value that is not a path, or a path this CPU cannot run.
pub fn requested() -> Result<Option<CpuPath>, CpuPathError> {
    let value = match std::env::var(ENV) {
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => {
            return Err(CpuPathError::Unknown {
                value: v.to_string_lossy().into_owned(),
            });
        }
    };
    let path = match value.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => return Ok(None),
        "scalar" => CpuPath::Scalar,
        "avx2" => CpuPath::Avx2,
        "avx512" => CpuPath::Avx512,
        _ => return Err(CpuPathError::Unknown { value }),
    };
    if !path.available() {
        let available = CpuPath::available_paths()
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(CpuPathError::Unavailable { value, available });
    }
    Ok(Some(path))
}

/// The path of this process and how it was chosen.
#[derive(Clone, Debug)]
pub struct Choice {
    /// The path the kernels run.
    pub path: CpuPath,
    /// Why, in words: forced by `SSL_CPU_PATH`, the best the CPU has, or the calibration's
    /// timings.
    pub reason: String,
}

/// The path of this process: chosen at the first call (see the module docs), then fixed. A
/// `SSL_CPU_PATH` that [`requested`] refuses is ignored here with a warning on stderr (the
/// `ssl` binary refuses it before any kernel runs).
pub fn choice() -> &'static Choice {
    static CHOICE: OnceLock<Choice> = OnceLock::new();
    CHOICE.get_or_init(|| match requested() {
        Ok(Some(path)) => Choice {
            path,
            reason: format!("forced by {ENV}"),
        },
        Ok(None) => automatic(),
        Err(e) => {
            eprintln!("warning: {e}; choosing the path automatically");
            automatic()
        }
    })
}

/// The path of this process ([`choice`]).
pub fn path() -> CpuPath {
    choice().path
}

/// The automatic choice: the best path without AVX-512, and AVX-512 when the calibration says
/// it pays.
fn automatic() -> Choice {
    if !CpuPath::Avx2.available() {
        return Choice {
            path: CpuPath::Scalar,
            reason: "this CPU has no AVX2 and FMA".into(),
        };
    }
    if !CpuPath::Avx512.available() {
        return Choice {
            path: CpuPath::Avx2,
            reason: "this CPU has no AVX-512F".into(),
        };
    }
    let cache = verdict_file();
    if let Some(path) = cache.as_ref().and_then(|f| std::fs::read_to_string(f).ok())
        && let Some(path) = parse_verdict(&path)
    {
        return Choice {
            path,
            reason: format!(
                "calibrated earlier on this CPU: {}, delete it to time again",
                cache
                    .as_ref()
                    .map_or(String::new(), |f| f.display().to_string())
            ),
        };
    }
    let (avx512_ms, avx2_ms) = calibrate();
    let path = if avx512_ms <= (1.0 - AVX512_MARGIN) * avx2_ms {
        CpuPath::Avx512
    } else {
        CpuPath::Avx2
    };
    if let Some(file) = &cache {
        // Best effort (a read-only home still runs, calibrating each time): written to a
        // temporary file, then renamed, so a concurrent reader sees all of it or none.
        let written = file
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| {
                let tmp = file.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, format!("{}\n", path.name()))?;
                std::fs::rename(&tmp, file)
            });
        if let Err(e) = written {
            eprintln!(
                "warning: {}: {e} (the CPU path is calibrated again next time)",
                file.display()
            );
        }
    }
    Choice {
        path,
        reason: format!(
            "calibrated: convolution GEMMs in {avx512_ms:.2} ms on AVX-512, {avx2_ms:.2} ms on AVX2; AVX-512 needs to be {:.0}% faster",
            AVX512_MARGIN * 100.0
        ),
    }
}

/// The path a verdict file names (`avx512` or `avx2`), if it names one.
fn parse_verdict(text: &str) -> Option<CpuPath> {
    match text.trim() {
        "avx512" => Some(CpuPath::Avx512),
        "avx2" => Some(CpuPath::Avx2),
        _ => None,
    }
}

/// The calibration's verdict file for this CPU model: `cpu-path-<hash of the model name>.txt`
/// in `$XDG_CACHE_HOME/ssl/` or `~/.cache/ssl/`; `None` without either variable.
fn verdict_file() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .unwrap_or("unknown CPU");
    // FNV-1a: a stable name for the model (std's hasher is not stable across releases).
    let hash = model.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    Some(base.join("ssl").join(format!("cpu-path-{hash:016x}.txt")))
}

/// Milliseconds of our AVX-512 GEMM and of the `gemm` crate's (AVX2) on the three GEMMs of a
/// 3x3 convolution with 64 input and 128 output channels over 1,024 pixels (im2col): the
/// forward `W [128, 576] col [576, 1024]`, the input gradient `W^T dy` and the weight gradient
/// `dy col^T` (transposed operands, as the kernels pass them); the best of 5 alternating rounds
/// (the least disturbed by other work on the cores).
fn calibrate() -> (f64, f64) {
    let (c_out, k, pixels) = (128, 576, 1024);
    // (m, n, k), lhs strides, rhs strides.
    type Shape = ((usize, usize, usize), (usize, usize), (usize, usize));
    let shapes: [Shape; 3] = [
        ((c_out, pixels, k), (k, 1), (pixels, 1)),
        ((k, pixels, c_out), (1, k), (pixels, 1)),
        ((c_out, k, pixels), (pixels, 1), (1, pixels)),
    ];
    let mut operands: Vec<_> = shapes
        .iter()
        .map(|&((m, n, k), _, _)| {
            let lhs: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect();
            let rhs: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
            (lhs, rhs, vec![0f32; m * n])
        })
        .collect();
    let (mut ours, mut theirs) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        for avx512 in [true, false] {
            let start = Instant::now();
            for (&(dims, lhs_strides, rhs_strides), (lhs, rhs, dst)) in
                shapes.iter().zip(operands.iter_mut())
            {
                // SAFETY: `dst` holds m * n floats and the strides stay inside the operands;
                // the calibration runs only where AVX-512F and AVX2 exist.
                unsafe {
                    if avx512 {
                        crate::packed_gemm::gemm(
                            crate::packed_gemm::Width::Avx512,
                            dst.as_mut_ptr(),
                            false,
                            dims,
                            lhs,
                            lhs_strides,
                            rhs,
                            rhs_strides,
                        );
                    } else {
                        crate::packed_gemm::gemm_crate(
                            dst.as_mut_ptr(),
                            false,
                            dims,
                            lhs,
                            lhs_strides,
                            rhs,
                            rhs_strides,
                        );
                    }
                }
                std::hint::black_box(&dst);
            }
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if avx512 {
                ours = ours.min(ms);
            } else {
                theirs = theirs.min(ms);
            }
        }
    }
    (ours, theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_ordered_and_named() {
        assert!(CpuPath::Scalar < CpuPath::Avx2 && CpuPath::Avx2 < CpuPath::Avx512);
        assert_eq!(
            [CpuPath::Scalar, CpuPath::Avx2, CpuPath::Avx512].map(CpuPath::name),
            ["scalar", "avx2", "avx512"]
        );
        assert!(CpuPath::Scalar.available());
        assert_eq!(CpuPath::available_paths().last(), Some(&CpuPath::Scalar));
    }

    #[test]
    fn verdict_files_name_a_path_or_nothing() {
        assert_eq!(parse_verdict("avx512\n"), Some(CpuPath::Avx512));
        assert_eq!(parse_verdict("avx2"), Some(CpuPath::Avx2));
        assert_eq!(parse_verdict(""), None);
        assert_eq!(parse_verdict("scalar"), None);
        let file = verdict_file().expect("HOME is set in tests");
        assert!(file.to_string_lossy().contains("cpu-path-"));
    }
}
