//! Dropout with a fast mask on the CPU. burn's `Dropout` draws its mask through the backend's
//! `float_random`, which on flex is one ChaCha draw and a distribution call per value on one
//! thread: a third of the text Transformer's BYOL step (`ssl bench --workloads step-text`,
//! perf, AMD EPYC Zen 4), whose eleven dropouts per forward pass draw about 4.7 million values.
//! Here one seed is drawn from the device's generator per call (so a seeded run, and a resumed
//! one, which reseeds the device every step, repeats its masks) and the mask is filled in parallel by a counter-based generator (SplitMix64 of the
//! seed and the value's block), then multiplied in: the backward pass is burn's product rule.
//!
//! Same semantics as `burn::nn::Dropout::forward` (Srivastava et al., "Dropout", JMLR 2014):
//! each value kept with probability `1 - p` and scaled by `1 / (1 - p)`, zeroed otherwise;
//! only while the module is training, on an autodiff device, with `p > 0`. Other devices and
//! float types take burn's module.

use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::{DType, Distribution, TensorData};
use rayon::prelude::*;

/// Values per block of the mask: one generator stream each, filled in parallel.
const BLOCK: usize = 4096;

/// `module.forward(input)` with the mask drawn here on `flex` float32 tensors (see the module
/// docs); any shape.
pub fn dropout<const D: usize>(module: &Dropout, input: Tensor<D>) -> Tensor<D> {
    let p = module.prob;
    if !module.training.is_enabled() || !input.device().is_autodiff() || p == 0.0 {
        return input;
    }
    if input.dtype() != DType::F32 || !super::is_flex(&input.device()) {
        return module.forward(input);
    }
    let device = input.device();
    let seed = draw_seed(&device);
    let shape = input.shape();
    let mask = mask(shape.num_elements(), p, seed);
    let mask = Tensor::<D>::from_data(TensorData::new(mask, shape), &device);
    input * mask
}

/// A mask's seed: three uniform floats from the device's generator (23 random bits each),
/// folded into 64 bits.
fn draw_seed(device: &Device) -> u64 {
    Tensor::<1>::random([3], Distribution::Uniform(0.0, 1.0), device)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 values after convert")
        .iter()
        .fold(0u64, |s, v| {
            s.rotate_left(23) ^ ((*v as f64) * (1u64 << 23) as f64) as u64
        })
}

/// `len` values: `1 / (1 - p)` with probability `1 - p`, else 0, from `seed`. The value at
/// index `i` depends only on `seed`, `i` and `p` (not on the thread count).
fn mask(len: usize, p: f64, seed: u64) -> Vec<f32> {
    let scale = (1.0 / (1.0 - p)) as f32;
    // Kept when a uniform 32-bit draw is at least `p * 2^32`.
    let threshold = (p * 4_294_967_296.0).min(4_294_967_295.0) as u32;
    let mut out = vec![0f32; len];
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(block, values)| {
            // Each block's stream starts from the seed mixed with the block's own hash, so that
            // blocks are not shifted copies of one stream.
            let mut counter = block as u64;
            let mut state = seed ^ splitmix64(&mut counter);
            for pair in values.chunks_mut(2) {
                let bits = splitmix64(&mut state);
                for (v, half) in pair.iter_mut().zip([bits as u32, (bits >> 32) as u32]) {
                    *v = if half >= threshold { scale } else { 0.0 };
                }
            }
        });
    out
}

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
/// OOPSLA 2014): the next 64 random bits of `state`.
#[inline(always)]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;

    #[test]
    fn masks_keep_the_right_share_and_scale_it() {
        for p in [0.1, 0.3, 0.5] {
            let m = mask(200_000, p, 7);
            let kept = m.iter().filter(|&&v| v > 0.0).count() as f64 / m.len() as f64;
            // 200,000 draws: the share is within 0.005 of 1 - p (over 3.5 standard deviations).
            assert!((kept - (1.0 - p)).abs() < 0.005, "p {p}: kept {kept}");
            let scale = (1.0 / (1.0 - p)) as f32;
            assert!(m.iter().all(|&v| v == 0.0 || v == scale));
        }
        assert_eq!(mask(10_000, 0.2, 3), mask(10_000, 0.2, 3));
        assert_ne!(mask(10_000, 0.2, 3), mask(10_000, 0.2, 4));
    }

    #[test]
    fn dropout_zeroes_scales_and_passes_gradients_through_the_mask() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let module = DropoutConfig::new(0.25).init();
        let x = Tensor::<2>::ones([64, 300], &device).require_grad();
        let y = dropout(&module, x.clone());
        let grads = (y.clone() * 3.0).sum().backward();
        let y = y.into_data().try_to_vec::<f32>().unwrap();
        let dx = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let kept = y.iter().filter(|&&v| v > 0.0).count() as f64 / y.len() as f64;
        assert!((kept - 0.75).abs() < 0.02, "kept {kept}");
        for (v, g) in y.iter().zip(&dx) {
            // Kept: 1 / 0.75 and a gradient of 3 / 0.75; dropped: 0 and 0.
            assert!(
                (*v == 0.0 && *g == 0.0)
                    || ((v - 4.0 / 3.0).abs() < 1e-6 && (g - 4.0).abs() < 1e-5)
            );
        }
        // The device's seed decides the mask, drawn here (not by burn's module).
        device.seed(5);
        assert_eq!(mask(64 * 300, 0.25, draw_seed(&device)), y);
        device.seed(5);
        let again = dropout(
            &module,
            Tensor::<2>::ones([64, 300], &device).require_grad(),
        );
        assert_eq!(again.into_data().try_to_vec::<f32>().unwrap(), y);
    }

    #[test]
    fn eval_mode_and_plain_devices_pass_the_input() {
        let module = DropoutConfig::new(0.5).init();
        let plain = Device::flex();
        let x = Tensor::<2>::ones([4, 4], &plain);
        assert_eq!(
            dropout(&module, x.clone())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
            vec![1.0; 16]
        );
        let off = DropoutConfig::new(0.0).init();
        let ad = Device::flex().autodiff();
        let x = Tensor::<2>::ones([4, 4], &ad);
        assert_eq!(
            dropout(&off, x).into_data().try_to_vec::<f32>().unwrap(),
            vec![1.0; 16]
        );
    }
}
