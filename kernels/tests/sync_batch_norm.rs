//! SyncBN: two threads, each one rank holding half of a batch, with the statistics exchanged,
//! give the whole batch's BatchNorm: the same output, the same input gradient, and gamma's and
//! beta's gradients that add up to the whole's. The upstream gradient is a fixed weighting
//! (`sum(out * w)`), the same per sample either way. Paths: the fused BatchNorm on
//! `[batch, features]` and on images, with and without its ReLU, and a convolution that gathers
//! its BatchNorm's statistics.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};
use ssl_kernels::sync_batch_norm::{local, with_exchange};
use ssl_kernels::{batch_norm, batch_norm_relu, conv_batch_norm_relu};
use std::sync::Arc;

/// The layers: a convolution (used by the conv paths only) and a BatchNorm with gamma and
/// beta away from 1 and 0.
fn layers(c_in: usize, channels: usize, stride: usize) -> (Conv2d, BatchNorm) {
    let device = Device::flex().autodiff();
    let conv = Conv2dConfig::new([c_in, channels], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(&device);
    let bn = BatchNormConfig::new(channels).init(&device);
    let bn = BatchNorm {
        gamma: bn
            .gamma
            .map(|g| g.mul_scalar(1.3).add_scalar(0.1).detach().require_grad()),
        beta: bn.beta.map(|b| b.add_scalar(0.2).detach().require_grad()),
        ..bn
    };
    (conv, bn)
}

/// Output and input gradient, then gamma's, beta's (and the conv weight's) gradients of
/// `forward` on `x` with upstream weights `w`.
fn run<const D: usize, const O: usize>(
    forward: &(impl Fn(&Conv2d, &BatchNorm, Tensor<D>) -> Tensor<O> + Sync),
    (conv, bn): &(Conv2d, BatchNorm),
    x: Tensor<D>,
    w: Tensor<O>,
) -> Vec<TensorData> {
    let x = x.detach().require_grad();
    let out = forward(conv, bn, x.clone());
    let grads = (out.clone() * w).sum().backward();
    let mut all = vec![
        out.into_data(),
        x.grad(&grads).expect("input gradient").into_data(),
        bn.gamma.val().grad(&grads).expect("gamma").into_data(),
        bn.beta.val().grad(&grads).expect("beta").into_data(),
    ];
    if let Some(g) = conv.weight.val().grad(&grads) {
        all.push(g.into_data());
    }
    all
}

/// The sum of two gradients of any rank.
fn add(a: &TensorData, b: &TensorData) -> TensorData {
    let (a, b) = (
        a.try_to_vec::<f32>().expect("f32"),
        b.try_to_vec::<f32>().expect("f32"),
    );
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    TensorData::new(sum, [a.len()])
}

fn flat(t: &TensorData) -> TensorData {
    let v = t.try_to_vec::<f32>().expect("f32");
    let n = v.len();
    TensorData::new(v, [n])
}

fn check<const D: usize, const O: usize>(
    forward: impl Fn(&Conv2d, &BatchNorm, Tensor<D>) -> Tensor<O> + Sync,
    shape: [usize; D],
    out_shape: [usize; O],
) {
    let device = Device::flex().autodiff();
    device.seed(7);
    // A convolution of stride 2 where the output is smaller (an im2col layer, which gathers
    // its BatchNorm's statistics; stride 1 takes Winograd, then the fused BatchNorm).
    let stride = if D == 4 && out_shape[O - 1] < shape[D - 1] {
        2
    } else {
        1
    };
    let layers = layers(shape[1], out_shape[1], stride);
    let x = Tensor::<D>::random(shape, Distribution::Normal(0.5, 2.0), &device);
    let w = Tensor::<O>::random(out_shape, Distribution::Normal(0.0, 1.0), &device);
    let whole = run(&forward, &layers, x.clone(), w.clone());
    let half = shape[0] / 2;
    let shards: Vec<Vec<TensorData>> = std::thread::scope(|s| {
        let joins: Vec<_> = local::ranks(2)
            .into_iter()
            .map(|handle| {
                let start = handle.rank() * half;
                let (x, w) = (
                    x.clone().narrow(0, start, half),
                    w.clone().narrow(0, start, half),
                );
                let (forward, layers) = (&forward, layers.clone());
                s.spawn(move || with_exchange(Arc::new(handle), || run(forward, &layers, x, w)))
            })
            .collect();
        joins
            .into_iter()
            .map(|j| j.join().expect("a rank"))
            .collect()
    });
    let tolerance = Tolerance::<f32>::absolute(1e-4).set_relative(1e-3);
    // Output and input gradient: the shards' rows are the whole's rows.
    for i in 0..2 {
        let mut joined = shards[0][i].try_to_vec::<f32>().expect("f32");
        joined.extend(shards[1][i].try_to_vec::<f32>().expect("f32"));
        let n = joined.len();
        TensorData::new(joined, [n]).assert_approx_eq(&flat(&whole[i]), tolerance);
    }
    // Parameter gradients: the ranks' own sums add up to the whole's.
    assert_eq!(shards[0].len(), whole.len());
    for i in 2..whole.len() {
        add(&shards[0][i], &shards[1][i]).assert_approx_eq(&flat(&whole[i]), tolerance);
    }
    // Without the exchange a rank's output is not the whole's (the comparison can fail).
    let alone = run(
        &forward,
        &layers,
        x.narrow(0, 0, half),
        w.narrow(0, 0, half),
    );
    let (a, b) = (
        alone[0].try_to_vec::<f32>().expect("f32"),
        whole[0].try_to_vec::<f32>().expect("f32"),
    );
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max > 1e-3,
        "local statistics should differ from the global ones"
    );
}

#[test]
fn feature_batch_norm_relu_over_two_ranks_is_the_whole_batch() {
    check(|_, bn, x| batch_norm_relu(bn, x), [16, 6], [16, 6]);
}

#[test]
fn image_batch_norm_over_two_ranks_is_the_whole_batch() {
    check(|_, bn, x| batch_norm(bn, x), [8, 4, 5, 5], [8, 4, 5, 5]);
    check(
        |_, bn, x| batch_norm_relu(bn, x),
        [8, 4, 5, 5],
        [8, 4, 5, 5],
    );
}

#[test]
fn convolution_with_gathered_statistics_over_two_ranks_is_the_whole_batch() {
    check(conv_batch_norm_relu, [8, 3, 8, 8], [8, 5, 8, 8]);
    check(conv_batch_norm_relu, [8, 3, 8, 8], [8, 5, 4, 4]);
}
