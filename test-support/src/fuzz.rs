//! A seeded mutation fuzzer for readers of untrusted bytes (images, WAV, IDX, CIFAR, configs).
//!
//! Valid seed inputs are mutated in the ways real files break (truncation, bit flips, header
//! fields set to extreme values, inserted, deleted and repeated chunks, appended garbage), one to
//! three mutations stacked, and fed to the reader under `catch_unwind`. A reader must return a
//! value or an error, never panic; errors must be one line naming the file. Inputs that break
//! this are written to `$SSL_TEST_CACHE/fuzz-crashes/` (else the system temp folder) and the test
//! fails listing them; the fixed ones are kept as explicit cases in the bad-input tests.
//!
//! The same seed gives the same inputs, so a failure reproduces; `SSL_FUZZ_ITERATIONS` scales
//! the number of mutants for a longer session.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// Values that header fields are set to: zero, one, and the edges of signed/unsigned ranges.
const EXTREMES: [u32; 8] = [
    0,
    1,
    0xFF,
    0xFFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0x0001_0000,
];

/// One random mutation of `input`.
fn mutate_once(input: &mut Vec<u8>, rng: &mut StdRng) {
    let len = input.len();
    match rng.random_range(0..8u32) {
        // Truncate.
        0 => input.truncate(rng.random_range(0..=len)),
        // Flip a few bits.
        1 if len > 0 => {
            for _ in 0..rng.random_range(1..=8) {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8u32);
            }
        }
        // Overwrite a few bytes.
        2 if len > 0 => {
            for _ in 0..rng.random_range(1..=4) {
                let i = rng.random_range(0..len);
                input[i] = [0u8, 0xFF, 0x7F, 0x80, rng.random()][rng.random_range(0..5)];
            }
        }
        // Set a 16- or 32-bit field of the header (first 64 bytes) to an extreme value.
        3 if len >= 4 => {
            let at = rng.random_range(0..(len.min(64) - 3));
            let v = EXTREMES[rng.random_range(0..EXTREMES.len())];
            let bytes = match rng.random_range(0..4u32) {
                0 => v.to_le_bytes().to_vec(),
                1 => v.to_be_bytes().to_vec(),
                2 => (v as u16).to_le_bytes().to_vec(),
                _ => (v as u16).to_be_bytes().to_vec(),
            };
            input[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        // Insert random bytes.
        4 => {
            let at = rng.random_range(0..=len);
            let n = rng.random_range(1..=64);
            let chunk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            input.splice(at..at, chunk);
        }
        // Delete a chunk.
        5 if len > 0 => {
            let at = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - at).min(256));
            input.drain(at..at + n);
        }
        // Repeat a chunk.
        6 if len > 0 => {
            let at = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - at).min(256));
            let chunk = input[at..at + n].to_vec();
            input.splice(at..at, chunk);
        }
        // Append garbage.
        _ => {
            let n = rng.random_range(1..=128);
            input.extend((0..n).map(|_| rng.random::<u8>()));
        }
    }
}

/// `count` mutants of the `seeds` (round robin), reproducible from `rng_seed`.
pub fn mutants(seeds: &[Vec<u8>], count: usize, rng_seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    (0..count)
        .map(|i| {
            let mut m = seeds[i % seeds.len()].clone();
            for _ in 0..rng.random_range(1..=3) {
                mutate_once(&mut m, &mut rng);
            }
            m
        })
        .collect()
}

/// Mutants per fuzz target: `base`, times `SSL_FUZZ_ITERATIONS / 1000` when that is set.
pub fn iterations(base: usize) -> usize {
    std::env::var("SSL_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map(|n| base * n / 1000)
        .unwrap_or(base)
        .max(1)
}

/// Feeds `count` mutants of `seeds` to `read`; `name` (a file name) is what `read` must name in
/// its errors. Panics, listing the saved inputs, when `read` panicked on any or returned an
/// error that is not one line naming `name`. Returns `(accepted, rejected)` counts.
pub fn fuzz<T, E: Display>(
    target: &str,
    name: &str,
    seeds: &[Vec<u8>],
    count: usize,
    read: impl Fn(&[u8]) -> Result<T, E>,
) -> (usize, usize) {
    // Every seed must be accepted, or the fuzzer only explores the error paths.
    for (i, s) in seeds.iter().enumerate() {
        if let Err(e) = read(s) {
            panic!("{target}: seed {i} is rejected: {e}");
        }
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures: Vec<(Vec<u8>, String)> = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    for input in mutants(seeds, count, 0x5eed ^ target.len() as u64) {
        match catch_unwind(AssertUnwindSafe(|| read(&input))) {
            Ok(Ok(_)) => accepted += 1,
            Ok(Err(e)) => {
                rejected += 1;
                let msg = e.to_string();
                if !msg.contains(name) || msg.contains('\n') {
                    failures.push((input, format!("unclear error: {msg:?}")));
                }
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push((input, format!("panic: {what}")));
            }
        }
    }
    std::panic::set_hook(hook);
    if !failures.is_empty() {
        let dir = std::env::var_os("SSL_TEST_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("fuzz-crashes");
        let _ = std::fs::create_dir_all(&dir);
        let report: Vec<String> = failures
            .iter()
            .enumerate()
            .take(20)
            .map(|(i, (bytes, why))| {
                let path = dir.join(format!("{target}-{i}.bin"));
                let _ = std::fs::write(&path, bytes);
                format!("{}: {why}", path.display())
            })
            .collect();
        panic!(
            "{target}: {} of {count} mutants broke the reader:\n{}",
            failures.len(),
            report.join("\n")
        );
    }
    eprintln!("{target}: {count} mutants, {accepted} accepted, {rejected} rejected cleanly");
    (accepted, rejected)
}
