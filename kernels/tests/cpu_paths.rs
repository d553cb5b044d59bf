//! The kernels on the CPU path of this process (`SSL_CPU_PATH`; CI runs this file once per path
//! the CPU has, see `ssl_kernels::cpu_path`): each path repeats its bits run to run (outputs and gradients of an im2col convolution, a Winograd
//! convolution and a convolution with its fused BatchNorm + ReLU). Agreement with burn's ops
//! on every path is the kernels' own tests, run under each path too.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use ssl_kernels::cpu_path;
use ssl_kernels::{conv_batch_norm_relu, conv2d};

/// Output, input gradient and weight gradient of `forward` on a seeded input.
fn outputs(
    forward: impl Fn(&Conv2d, Tensor<4>) -> Tensor<4>,
    c_in: usize,
    c_out: usize,
    stride: usize,
) -> Vec<Vec<u32>> {
    let device = Device::flex().autodiff();
    device.seed(7);
    let conv = Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let x = Tensor::<4>::random([8, c_in, 16, 16], Distribution::Normal(0.0, 1.0), &device)
        .require_grad();
    let out = forward(&conv, x.clone());
    let grads = (out.clone() * out.clone()).sum().backward();
    [
        out.into_data(),
        x.grad(&grads).expect("input gradient").into_data(),
        conv.weight
            .val()
            .grad(&grads)
            .expect("weight gradient")
            .into_data(),
    ]
    .into_iter()
    .map(|d| {
        d.try_to_vec::<f32>()
            .expect("f32")
            .iter()
            .map(|v| v.to_bits())
            .collect()
    })
    .collect()
}

#[test]
fn each_path_repeats_its_bits() {
    let choice = cpu_path::choice();
    eprintln!("CPU path {} ({})", choice.path.name(), choice.reason);
    // 64 output channels: GEMMs with enough rows for the AVX-512 path's own kernel.
    let bn = BatchNormConfig::new(64).init(&Device::flex().autodiff());
    type Case<'a> = (&'a str, Box<dyn Fn() -> Vec<Vec<u32>> + 'a>);
    let cases: [Case; 3] = [
        // Stride 2: im2col.
        (
            "im2col convolution",
            Box::new(|| outputs(conv2d, 16, 64, 2)),
        ),
        // 3x3 stride 1 with 64 channels: Winograd.
        (
            "Winograd convolution",
            Box::new(|| outputs(conv2d, 64, 64, 1)),
        ),
        (
            "convolution + BatchNorm + ReLU",
            Box::new(|| outputs(|c, x| conv_batch_norm_relu(c, &bn, x), 16, 64, 1)),
        ),
    ];
    for (name, run) in cases {
        let first = run();
        let second = run();
        assert!(
            first == second,
            "{name}: two runs on path {} differ",
            cpu_path::path().name()
        );
    }
}
