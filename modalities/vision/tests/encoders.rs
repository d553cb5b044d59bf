//! Encoder output shapes: `[batch, dim]` with `dim()` known up front.

use burn::prelude::*;
use ssl_framework::Encoder;
use ssl_vision::encoders::{ResNet, SmallCnn, Stem, VisionEncoder};

#[test]
fn encoders_map_images_to_batch_by_dim() {
    let d = Device::flex();
    let cases: Vec<(VisionEncoder, [usize; 4], usize)> = vec![
        (
            VisionEncoder::SmallCnn(SmallCnn::new(3, &[8, 16], &[1, 2], &d)),
            [2, 3, 32, 32],
            16,
        ),
        (
            VisionEncoder::ResNet(ResNet::new(18, Stem::Cifar, 8, &d)),
            [2, 3, 32, 32],
            64,
        ),
        (
            VisionEncoder::ResNet(ResNet::new(34, Stem::Imagenet, 8, &d)),
            [2, 3, 64, 64],
            64,
        ),
        (
            VisionEncoder::ResNet(ResNet::new(50, Stem::Imagenet, 8, &d)),
            [2, 3, 64, 64],
            256,
        ),
    ];
    for (enc, shape, dim) in cases {
        assert_eq!(enc.dim(), dim);
        let out = enc.forward(Tensor::random(
            shape,
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &d,
        ));
        assert_eq!(out.dims(), [shape[0], dim]);
        let v = out.into_data().try_to_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()));
    }
    // Width 64 gives the paper's sizes.
    assert_eq!(ResNet::new(18, Stem::Cifar, 64, &d).dim(), 512);
    assert_eq!(ResNet::new(50, Stem::Imagenet, 64, &d).dim(), 2048);
}
