//! `ssl bench --workloads ops-smallcnn`: the BYOL step of the small CNN taken apart op by op
//! (each convolution forward, forward + backward, and BatchNorm forward + backward at the shapes
//! of `step-smallcnn`, batch 128, plus a square matmul, and ResNet-18's stride-1 body
//! convolutions forward + backward at batch 64), in milliseconds. Its PyTorch twin,
//! `scripts/bench_ops_torch.py`, times the same ops with the same shapes, so that the ratio per
//! op shows where the backend loses: a minimal benchmark of a slow op that can be reported
//! upstream with only burn in it.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::{batch_norm_train, conv2d};
use burn::tensor::ops::ConvOptions;
use std::time::Instant;

/// One timed op: a name that says the shapes, and its median time in milliseconds.
pub struct OpTiming {
    /// `conv fwd 3->32 32px s1`, `bn fwd+bwd c32 32px`, ...
    pub op: String,
    /// Median over the repetitions, milliseconds.
    pub median_ms: f64,
}

/// The small CNN's four convolutions (channels in, channels out, input side in pixels, stride):
/// `configs/vision/cifar10-quick.toml`'s encoder, 32x32 inputs.
pub const SMALL_CNN_CONVS: [(usize, usize, usize, usize); 4] = [
    (3, 32, 32, 1),
    (32, 64, 32, 2),
    (64, 128, 16, 2),
    (128, 256, 8, 2),
];

/// ResNet-18's body convolutions (channels in = out, input side in pixels; 3x3, stride 1,
/// padding 1) on 32x32 CIFAR inputs, timed at half the small CNN's batch (64, the batch of
/// `step-resnet18-cifar`): the layers our Winograd kernels take.
pub const RESNET_BODY_CONVS: [(usize, usize); 4] = [(64, 32), (128, 16), (256, 8), (512, 4)];

/// Median milliseconds of burn's `conv2d` forward + backward (input and weight gradients).
fn burn_conv_fwd_bwd_ms(
    device: &Device,
    reps: usize,
    (x, w): (&Tensor<4>, &Tensor<4>),
    options: &ConvOptions<2>,
) -> f64 {
    median_ms(device, reps, || {
        let grads = conv2d(x.clone(), w.clone(), None, options.clone())
            .sum()
            .backward();
        std::hint::black_box(grads);
    })
}

/// Median milliseconds of our `kernels::conv2d` forward + backward on `module`.
fn ssl_conv_fwd_bwd_ms(device: &Device, reps: usize, module: &Conv2d, x: &Tensor<4>) -> f64 {
    median_ms(device, reps, || {
        let grads = crate::conv2d(module, x.clone()).sum().backward();
        std::hint::black_box(grads);
    })
}

/// Median time in milliseconds of `f` over `reps` runs after 2 warm-up runs (the device is
/// synchronized after each run).
fn median_ms(device: &Device, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..2 {
        f();
    }
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            device.sync().ok();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Times the ops of the small CNN's BYOL step at batch `batch` (the step workload uses 128),
/// each op the median of `reps` runs. Every forward + backward runs `sum()` of the output and
/// `backward()`, with gradients for the input and the weights (gamma and beta for BatchNorm), as
/// in training; the twin script does exactly the same.
pub fn time_ops(batch: usize, reps: usize) -> Vec<OpTiming> {
    let base = Device::flex();
    base.seed(0);
    let ad = base.clone().autodiff();
    let normal = Distribution::Normal(0.0, 1.0);
    let mut rows = Vec::new();
    let n = 1024;
    let a = Tensor::<2>::random([n, n], normal, &base);
    let b = Tensor::<2>::random([n, n], normal, &base);
    rows.push(OpTiming {
        op: format!("matmul {n}x{n}x{n}"),
        median_ms: median_ms(&base, reps, || {
            let _ = a.clone().matmul(b.clone()).sum().into_scalar::<f32>();
        }),
    });
    for (cin, cout, side, stride) in SMALL_CNN_CONVS {
        let xa = Tensor::<4>::random([batch, cin, side, side], normal, &ad).require_grad();
        let wa = Tensor::<4>::random([cout, cin, 3, 3], normal, &ad)
            .mul_scalar(0.1)
            .detach()
            .require_grad();
        let (x, w) = (xa.clone().without_autodiff(), wa.clone().without_autodiff());
        let options = ConvOptions::new([stride, stride], [1, 1], [1, 1], 1);
        let label = format!("{cin}->{cout} {side}px s{stride}");
        rows.push(OpTiming {
            op: format!("conv fwd {label}"),
            median_ms: median_ms(&base, reps, || {
                let _ = conv2d(x.clone(), w.clone(), None, options.clone())
                    .sum()
                    .into_scalar::<f32>();
            }),
        });
        rows.push(OpTiming {
            op: format!("conv fwd+bwd {label}"),
            median_ms: burn_conv_fwd_bwd_ms(&base, reps, (&xa, &wa), &options),
        });
        let module = Conv2dConfig::new([cin, cout], [3, 3])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&ad);
        let module_plain = module.valid();
        rows.push(OpTiming {
            op: format!("conv fwd {label} (ssl im2col)"),
            median_ms: median_ms(&base, reps, || {
                let _ = crate::conv2d(&module_plain, x.clone())
                    .sum()
                    .into_scalar::<f32>();
            }),
        });
        rows.push(OpTiming {
            op: format!("conv fwd+bwd {label} (ssl im2col)"),
            median_ms: ssl_conv_fwd_bwd_ms(&base, reps, &module, &xa),
        });
        let out_side = side.div_ceil(stride);
        let y = Tensor::<4>::random([batch, cout, out_side, out_side], normal, &ad).require_grad();
        let gamma = Tensor::<1>::ones([cout], &ad).require_grad();
        let beta = Tensor::<1>::zeros([cout], &ad).require_grad();
        rows.push(OpTiming {
            op: format!("bn fwd+bwd c{cout} {out_side}px"),
            median_ms: median_ms(&base, reps, || {
                let grads = batch_norm_train(y.clone(), gamma.clone(), beta.clone(), 1e-5)
                    .output
                    .sum()
                    .backward();
                std::hint::black_box(grads);
            }),
        });
        rows.push(OpTiming {
            op: format!("bn fwd+bwd c{cout} {out_side}px (ssl fused)"),
            median_ms: median_ms(&base, reps, || {
                let (output, _, _) =
                    crate::batch_norm_train(y.clone(), gamma.clone(), beta.clone(), 1e-5);
                std::hint::black_box(output.sum().backward());
            }),
        });
    }
    let resnet_batch = (batch / 2).max(1);
    for (channels, side) in RESNET_BODY_CONVS {
        let xa =
            Tensor::<4>::random([resnet_batch, channels, side, side], normal, &ad).require_grad();
        let wa = Tensor::<4>::random([channels, channels, 3, 3], normal, &ad)
            .mul_scalar(0.05)
            .detach()
            .require_grad();
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let label = format!("{channels}->{channels} {side}px s1 b{resnet_batch}");
        rows.push(OpTiming {
            op: format!("conv fwd+bwd {label}"),
            median_ms: burn_conv_fwd_bwd_ms(&base, reps, (&xa, &wa), &options),
        });
        let module = Conv2dConfig::new([channels, channels], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&ad);
        let kernel = if crate::conv2d::winograd_enabled() {
            "ssl winograd"
        } else {
            "ssl im2col"
        };
        rows.push(OpTiming {
            op: format!("conv fwd+bwd {label} ({kernel})"),
            median_ms: ssl_conv_fwd_bwd_ms(&base, reps, &module, &xa),
        });
    }
    rows
}

/// One GEMM shape timed on one set of kernels ([`time_gemms`]).
pub struct GemmTiming {
    /// `m x n x k`.
    pub shape: (usize, usize, usize),
    /// `gemm crate`, `ssl avx2` or `ssl avx512`.
    pub kernels: &'static str,
    /// GFLOP/s (`2 m n k` per product) at the median of the repetitions, one thread.
    pub gflops: f64,
}

/// The convolutions' GEMM shapes ([`time_gemms`]): `m` output channels, `n` pixels (or
/// Winograd tiles) of the images in one product, `k` input channels times the kernel's taps.
pub const CONV_GEMM_SHAPES: [(usize, usize, usize); 5] = [
    (64, 1024, 288),
    (128, 1024, 576),
    (256, 256, 1152),
    (64, 1024, 64),
    (256, 256, 256),
];

/// GFLOP/s of one thread on [`CONV_GEMM_SHAPES`]: the `gemm` crate (the `avx2` and `scalar`
/// paths' GEMM, its own choice of kernels) and each of our widths this CPU has (the `avx512`
/// path's, [`crate::cpu_path`]), alternating per repetition, median of `reps`. The basis of the
/// start-up choice between AVX2 and AVX-512.
pub fn time_gemms(reps: usize) -> Vec<GemmTiming> {
    use crate::packed_gemm::Width;
    let reps = reps.max(3);
    let mut kernels: Vec<(&'static str, Option<Width>)> = vec![("gemm crate", None)];
    for (name, width) in [("ssl avx2", Width::Avx2), ("ssl avx512", Width::Avx512)] {
        if width.available() {
            kernels.push((name, Some(width)));
        }
    }
    let mut out = Vec::new();
    for (m, n, k) in CONV_GEMM_SHAPES {
        let lhs: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect();
        let rhs: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
        let mut dst = vec![0f32; m * n];
        let mut seconds = vec![Vec::new(); kernels.len()];
        for _ in 0..reps + 1 {
            for (times, (_, width)) in seconds.iter_mut().zip(&kernels) {
                let start = Instant::now();
                // SAFETY: `dst` holds m * n floats; the strides stay inside the operands; a
                // width runs only where this CPU has it.
                unsafe {
                    match width {
                        Some(w) => crate::packed_gemm::gemm(
                            *w,
                            dst.as_mut_ptr(),
                            false,
                            (m, n, k),
                            &lhs,
                            (k, 1),
                            &rhs,
                            (n, 1),
                        ),
                        None => crate::packed_gemm::gemm_crate(
                            dst.as_mut_ptr(),
                            false,
                            (m, n, k),
                            &lhs,
                            (k, 1),
                            &rhs,
                            (n, 1),
                        ),
                    }
                }
                std::hint::black_box(&dst);
                times.push(start.elapsed().as_secs_f64());
            }
        }
        for (mut times, (name, _)) in seconds.into_iter().zip(&kernels) {
            // The first repetition warms the caches and the packing buffers.
            times.remove(0);
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            out.push(GemmTiming {
                shape: (m, n, k),
                kernels: name,
                gflops: 2.0 * (m * n * k) as f64 / median / 1e9,
            });
        }
    }
    out
}
