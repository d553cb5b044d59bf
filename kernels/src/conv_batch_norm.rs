//! A convolution followed by BatchNorm (and usually a ReLU), the BatchNorm's batch statistics
//! gathered by the convolution.
//!
//! In training mode a BatchNorm needs its input's per-channel mean and variance before it can
//! write anything: on its own that is two extra passes over the convolution's output (the
//! small CNN's first one is 16 MiB, read back from L3 or memory), and with the output pass 9%
//! of the small CNN's BYOL step. The im2col convolution ([`mod@super::conv2d`]) computes its
//! output a block of images at a time; here it also takes each block's per-channel moments
//! (count, mean, sum of squared deviations) while the block is still in cache, merges them
//! (Chan, Golub & LeVeque 1979), and the BatchNorm reads its input once, to write its output. Gradients are unchanged: the BatchNorm's backward
//! already differentiates through its statistics (Ioffe & Szegedy 2015, Algorithm 1), so the
//! statistics enter it as constants.
//!
//! Only where both kernels run anyway (training mode on `flex` autodiff, float32, an im2col
//! convolution without bias); elsewhere (Winograd layers, inference, other devices) it is
//! `batch_norm(conv2d(x))`, the same values up to float rounding (tests hold the two together).

use super::batch_norm::{batch_norm_then, batch_norm_with_statistics};
use super::conv2d::{Im2colConv2d, conv_plan, conv2d};
use burn::backend::Dispatch;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;

/// `batch_norm(bn, conv2d(conv, input))` ([`super::conv2d()`], [`super::batch_norm()`]):
/// `input` `[batch, c_in, height, width]` (pixels); returns `[batch, c_out, h_out, w_out]`.
/// In training mode on `flex` autodiff, the BatchNorm's statistics come from the convolution's
/// blocks (see the module docs) and its input is read once.
pub fn conv_batch_norm(conv: &Conv2d, bn: &BatchNorm, input: Tensor<4>) -> Tensor<4> {
    conv_batch_norm_then(conv, bn, input, false)
}

/// `relu(batch_norm(bn, conv2d(conv, input)))`: [`conv_batch_norm`] with the ReLU fused into
/// the BatchNorm's passes as in [`super::batch_norm_relu`] (zero where `<= 0`, NaN kept).
/// Shapes as for [`conv_batch_norm`].
pub fn conv_batch_norm_relu(conv: &Conv2d, bn: &BatchNorm, input: Tensor<4>) -> Tensor<4> {
    conv_batch_norm_then(conv, bn, input, true)
}

fn conv_batch_norm_then(conv: &Conv2d, bn: &BatchNorm, input: Tensor<4>, relu: bool) -> Tensor<4> {
    let c_out = conv.weight.dims()[0];
    let [batch, ..] = input.dims();
    let fused = conv_plan(conv, &input).filter(|plan| {
        !plan.winograd
            && batch > 0
            && plan.geometry.output.iter().all(|&d| d > 0)
            && conv.bias.is_none()
            && input.device().is_autodiff()
            && bn.training.is_enabled()
            && bn.gamma.dims() == [c_out]
            && bn.beta.dims() == [c_out]
            && bn.gamma.val().dtype() == DType::F32
            && bn.beta.val().dtype() == DType::F32
    });
    let Some(plan) = fused else {
        return batch_norm_then(bn, conv2d(conv, input), relu);
    };
    let (output, mean, variance) = <Dispatch as Im2colConv2d>::im2col_conv2d_with_statistics(
        input.into_dispatch(),
        conv.weight.val().into_dispatch(),
        plan.geometry,
    );
    batch_norm_with_statistics(
        bn,
        Tensor::from_dispatch(output),
        Tensor::<1>::from_dispatch(mean).detach(),
        Tensor::<1>::from_dispatch(variance).detach(),
        relu,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{batch_norm, batch_norm_relu};
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::{BatchNormConfig, PaddingConfig2d};
    use burn::tensor::{Distribution, Tolerance};

    /// Output, running statistics and the input, weight, gamma and beta gradients of the fused
    /// path against `batch_norm[_relu](conv2d(x))` on the same layers and input, with a random
    /// upstream gradient; `offset` is added to the input (BatchNorm inputs far from zero).
    fn compare(config: Conv2dConfig, input: [usize; 4], relu: bool, offset: f32) {
        let device = Device::flex().autodiff();
        let conv = config.init(&device);
        let c_out = conv.weight.dims()[0];
        let gamma = Tensor::<1>::random([c_out], Distribution::Uniform(0.5, 1.5), &device);
        let beta = Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device);
        // A fresh BatchNorm per run: clones share their running statistics.
        let new_bn = || {
            let bn = BatchNormConfig::new(c_out).init(&device);
            BatchNorm {
                gamma: bn.gamma.map(|_| gamma.clone().require_grad()),
                beta: bn.beta.map(|_| beta.clone().require_grad()),
                ..bn
            }
        };
        let x0 =
            Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &device).add_scalar(offset);
        let shape = conv.forward(x0.clone()).shape();
        let upstream = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let (conv, bn) = (conv.clone(), new_bn());
            let x = x0.clone().detach().require_grad();
            let out = match (fused, relu) {
                (true, true) => conv_batch_norm_relu(&conv, &bn, x.clone()),
                (true, false) => conv_batch_norm(&conv, &bn, x.clone()),
                (false, true) => batch_norm_relu(&bn, conv2d(&conv, x.clone())),
                (false, false) => batch_norm(&bn, conv2d(&conv, x.clone())),
            };
            let grads = (out.clone() * upstream.clone()).sum().backward();
            let grad = |t: Tensor<4>| t.grad(&grads).expect("a gradient").into_data();
            (
                out.into_data(),
                bn.running_mean.value().into_data(),
                bn.running_var.value().into_data(),
                grad(x),
                conv.weight
                    .val()
                    .grad(&grads)
                    .expect("weight gradient")
                    .into_data(),
                bn.gamma
                    .val()
                    .grad(&grads)
                    .expect("gamma gradient")
                    .into_data(),
                bn.beta
                    .val()
                    .grad(&grads)
                    .expect("beta gradient")
                    .into_data(),
            )
        };
        let (ours, theirs) = (run(true), run(false));
        let tolerance = Tolerance::<f32>::absolute(2e-4).set_relative(2e-3);
        ours.0.assert_approx_eq(&theirs.0, tolerance);
        ours.1.assert_approx_eq(&theirs.1, tolerance);
        ours.2.assert_approx_eq(&theirs.2, tolerance);
        ours.3.assert_approx_eq(&theirs.3, tolerance);
        ours.4.assert_approx_eq(&theirs.4, tolerance);
        ours.5.assert_approx_eq(&theirs.5, tolerance);
        ours.6.assert_approx_eq(&theirs.6, tolerance);
    }

    fn layer(c_in: usize, c_out: usize, stride: usize) -> Conv2dConfig {
        Conv2dConfig::new([c_in, c_out], [3, 3])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
    }

    #[test]
    fn matches_conv_then_batch_norm_one_image_per_block() {
        // 16x16 outputs: one image per GEMM block, statistics merged over 9 blocks.
        compare(layer(3, 8, 1), [9, 3, 16, 16], true, 0.0);
        compare(layer(4, 6, 2), [9, 4, 32, 32], false, 0.0);
    }

    #[test]
    fn matches_conv_then_batch_norm_several_images_per_block() {
        // 4x4 outputs: several images per block and a last, shorter block.
        compare(layer(5, 7, 2), [19, 5, 8, 8], true, 0.0);
        compare(layer(5, 7, 1), [19, 5, 4, 4], false, 0.0);
    }

    #[test]
    fn statistics_keep_their_precision_far_from_zero() {
        // Inputs around 300 give convolution outputs whose means are large against their
        // spread; merged block moments must not cancel.
        compare(layer(3, 4, 1), [6, 3, 8, 8], true, 300.0);
    }

    #[test]
    fn falls_back_where_the_kernels_do_not_fuse() {
        // With a bias, and on a Winograd layer: `batch_norm(conv2d(x))` itself.
        compare(layer(3, 4, 2).with_bias(true), [4, 3, 8, 8], true, 0.0);
        compare(layer(16, 16, 1), [2, 16, 6, 6], false, 0.0);
    }

    #[test]
    fn the_convolution_gathers_the_exact_batch_statistics() {
        // The statistics themselves against a two-pass reference in f64 over the output, on a
        // layer with several images per block and one with one image per block.
        let device = Device::flex();
        for (config, input) in [
            (layer(5, 7, 2), [19, 5, 8, 8]),
            (layer(3, 6, 1), [3, 3, 16, 16]),
        ] {
            let conv = config.init(&device);
            let x = Tensor::<4>::random(input, Distribution::Normal(2.0, 1.0), &device);
            let plan = conv_plan(&conv, &x).expect("an im2col layer");
            let (out, mean, variance) = <Dispatch as Im2colConv2d>::im2col_conv2d_with_statistics(
                x.into_dispatch(),
                conv.weight.val().into_dispatch(),
                plan.geometry,
            );
            let out = Tensor::<4>::from_dispatch(out);
            let [n, c, h, w] = out.dims();
            let values = out.into_data().try_to_vec::<f32>().expect("float32");
            let mean = Tensor::<1>::from_dispatch(mean)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let variance = Tensor::<1>::from_dispatch(variance)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            for ch in 0..c {
                let channel: Vec<f64> = (0..n)
                    .flat_map(|b| values[(b * c + ch) * h * w..][..h * w].iter())
                    .map(|&v| v as f64)
                    .collect();
                let m = channel.iter().sum::<f64>() / channel.len() as f64;
                let v = channel.iter().map(|x| (x - m).powi(2)).sum::<f64>() / channel.len() as f64;
                assert!(
                    (mean[ch] as f64 - m).abs() < 1e-5 * (1.0 + m.abs()),
                    "mean {ch}"
                );
                assert!((variance[ch] as f64 - v).abs() < 1e-5 * v, "variance {ch}");
            }
        }
    }

    #[test]
    fn the_untracked_target_network_path_matches_and_updates_running_statistics() {
        // BYOL's target network: autodiff device, BatchNorm in training mode, nothing tracked.
        let device = Device::flex().autodiff();
        let conv = layer(3, 5, 2).init(&device).no_grad();
        let x = Tensor::<4>::random([6, 3, 12, 12], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let bn = BatchNormConfig::new(5).init(&device).no_grad();
            let out = if fused {
                conv_batch_norm_relu(&conv, &bn, x.clone())
            } else {
                batch_norm_relu(&bn, conv2d(&conv, x.clone()))
            };
            (
                out.into_data(),
                bn.running_mean.value().into_data(),
                bn.running_var.value().into_data(),
            )
        };
        let (ours, theirs) = (run(true), run(false));
        let tolerance = Tolerance::<f32>::absolute(1e-5).set_relative(1e-4);
        ours.0.assert_approx_eq(&theirs.0, tolerance);
        ours.1.assert_approx_eq(&theirs.1, tolerance);
        ours.2.assert_approx_eq(&theirs.2, tolerance);
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        // Fixed blocks and a fixed merge order: bit-identical outputs and gradients on 1 and 3
        // threads (the weight gradient's partials too, summed in parallel in a fixed order).
        let device = Device::flex().autodiff();
        let conv = layer(4, 6, 2).init(&device);
        let x0 = Tensor::<4>::random([19, 4, 16, 16], Distribution::Normal(1.0, 1.0), &device);
        let run = || {
            let bn = BatchNormConfig::new(6).init(&device);
            let x = x0.clone().detach().require_grad();
            let out = conv_batch_norm_relu(&conv, &bn, x.clone());
            let grads = out.clone().sum().backward();
            (
                out.into_data(),
                x.grad(&grads).expect("input gradient").into_data(),
                conv.weight
                    .val()
                    .grad(&grads)
                    .expect("weight gradient")
                    .into_data(),
                bn.running_var.value().into_data(),
            )
        };
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool")
                .install(run)
        };
        assert_eq!(on(1), on(3));
    }

    #[test]
    fn inference_uses_the_running_statistics() {
        // Outside autodiff (the trained encoder at evaluation): the running statistics, as
        // burn's BatchNorm, not batch statistics.
        let device = Device::flex();
        let conv = layer(3, 4, 1).init(&device);
        let bn = BatchNormConfig::new(4).init(&device);
        let x = Tensor::<4>::random([2, 3, 5, 5], Distribution::Normal(0.0, 1.0), &device);
        let ours = conv_batch_norm_relu(&conv, &bn, x.clone());
        let theirs = burn::tensor::activation::relu(bn.forward(conv.forward(x)));
        ours.into_data()
            .assert_approx_eq::<f32>(&theirs.into_data(), Tolerance::absolute(1e-5));
    }
}
