//! Max pooling over 2x2 windows with stride 2 (the pooling of BYOL-A's audio encoder, after
//! each conv block), forward and backward. burn-flex's `max_pool2d` is a general loop with a
//! division per value and its backward adds each gradient into place one at a time: 40% of the
//! audio step (`ssl bench --workloads step-audio`, perf, AMD EPYC Zen 4). Here the windows do
//! not overlap, so the backward writes every input gradient once: the output gradient where
//! the window's maximum was, zero elsewhere; the maximum is found again from the input (kept by
//! autodiff anyway) instead of storing indices.
//!
//! Ties go to the first of the window's values in row order (top-left, top-right,
//! bottom-left, bottom-right); a NaN is the maximum of its window (the first NaN takes the
//! gradient). An odd last
//! row or column is not covered by any window (floor mode): its gradient is zero.

use super::{contiguous, slice, written_output};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// 2x2 stride-2 max pooling kernels, as a burn backend extension: implemented for `flex`
/// (float32) and for autodiff over it.
#[backend_extension(Flex, Autodiff)]
pub trait MaxPool2x2: Backend {
    /// `x` `[batch, channels, height, width]`; returns `[batch, channels, height / 2, width /
    /// 2]` (rounded down).
    fn max_pool_2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The input gradient (the shape of `x`) from the output gradient `output_grad`.
    fn max_pool_2x2_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// `pool.forward(input)` with our kernel when `pool` is 2x2 with stride 2, no padding, no
/// dilation and floor mode, and `input` is float32 on `flex`; burn's `max_pool2d` otherwise.
/// `input` `[batch, channels, height, width]`; returns `[batch, channels, height / 2, width /
/// 2]` (rounded down), the same values and gradients as burn's (ties and NaN aside: see the
/// module docs).
pub fn max_pool2d(pool: &MaxPool2d, input: Tensor<4>) -> Tensor<4> {
    let [_, _, height, width] = input.dims();
    let ours = pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(
            pool.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        )
        && height >= 2
        && width >= 2
        && input.dtype() == DType::F32
        && super::is_flex(&input.device());
    if !ours {
        return pool.forward(input);
    }
    Tensor::<4>::from_dispatch(<Dispatch as MaxPool2x2>::max_pool_2x2(
        input.into_dispatch(),
    ))
}

/// The index (0 to 3, row order) of the maximum of a window's values `v`, as the module docs
/// say: the first of equals, a NaN over anything.
#[inline(always)]
fn argmax(v: [f32; 4]) -> usize {
    let mut best = 0;
    for i in 1..4 {
        if v[i] > v[best] || (v[i].is_nan() && !v[best].is_nan()) {
            best = i;
        }
    }
    best
}

/// `[n, c, h, w]` of a 4-d flex tensor.
fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

fn new_tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    )
}

impl MaxPool2x2 for Flex {
    fn max_pool_2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let x = contiguous(x);
        let [n, c, h, w] = dims4(&x);
        let (ho, wo) = (h / 2, w / 2);
        let xs = slice(&x);
        let y = written_output(n * c * ho * wo, |y| {
            if ho * wo == 0 {
                return;
            }
            y.par_chunks_mut(ho * wo)
                .zip(xs.par_chunks(h * w))
                .for_each(|(yp, xp)| pool_plane(yp, xp, (w, ho, wo)));
        });
        new_tensor(y, [n, c, ho, wo])
    }

    fn max_pool_2x2_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (x, dy) = (contiguous(x), contiguous(output_grad));
        let [n, c, h, w] = dims4(&x);
        let (ho, wo) = (h / 2, w / 2);
        let (xs, dys) = (slice(&x), slice(&dy));
        let dx = written_output(n * c * h * w, |dx| {
            if h * w == 0 {
                return;
            }
            dx.par_chunks_mut(h * w)
                .zip(xs.par_chunks(h * w))
                .enumerate()
                .for_each(|(plane, (dxp, xp))| {
                    let dyp = &dys[plane * ho * wo..][..ho * wo];
                    unpool_plane(dxp, xp, dyp, (w, ho, wo));
                });
        });
        new_tensor(dx, [n, c, h, w])
    }
}

/// One plane's maxima: `y` `[ho, wo]` from `x` `[h, w]` (row length `w`).
fn pool_plane(y: &mut [MaybeUninit<f32>], x: &[f32], (w, ho, wo): (usize, usize, usize)) {
    for i in 0..ho {
        let (top, bottom) = (&x[2 * i * w..][..w], &x[(2 * i + 1) * w..][..w]);
        for (j, out) in y[i * wo..][..wo].iter_mut().enumerate() {
            let v = [top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]];
            out.write(v[argmax(v)]);
        }
    }
}

/// One plane's input gradient `dx` `[h, w]`: `dy` `[ho, wo]` at each window's maximum in `x`,
/// zero elsewhere (and on an odd last row or column).
fn unpool_plane(
    dx: &mut [MaybeUninit<f32>],
    x: &[f32],
    dy: &[f32],
    (w, ho, wo): (usize, usize, usize),
) {
    for i in 0..ho {
        let (top, bottom) = (&x[2 * i * w..][..w], &x[(2 * i + 1) * w..][..w]);
        let (dtop, dbottom) = dx[2 * i * w..][..2 * w].split_at_mut(w);
        for j in 0..wo {
            let v = [top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]];
            let at = argmax(v);
            let g = dy[i * wo + j];
            dtop[2 * j].write(if at == 0 { g } else { 0.0 });
            dtop[2 * j + 1].write(if at == 1 { g } else { 0.0 });
            dbottom[2 * j].write(if at == 2 { g } else { 0.0 });
            dbottom[2 * j + 1].write(if at == 3 { g } else { 0.0 });
        }
        // The odd last column.
        for d in [&mut *dtop, &mut *dbottom] {
            d[2 * wo..].iter_mut().for_each(|v| {
                v.write(0.0);
            });
        }
    }
    // The odd last row.
    dx[2 * ho * w..].iter_mut().for_each(|v| {
        v.write(0.0);
    });
}

impl<B: Backend + MaxPool2x2, C: CheckpointStrategy> MaxPool2x2 for Autodiff<B, C> {
    fn max_pool_2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct MaxPool2x2Backward;

        impl<B: Backend + MaxPool2x2> Backward<B, 1> for MaxPool2x2Backward {
            // The input.
            type State = B::FloatTensorPrimitive;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node_x] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::max_pool_2x2_backward(ops.state, grad));
                }
            }
        }

        let nodes = [x.node()];
        let x = x.into_primitive();
        match MaxPool2x2Backward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = B::max_pool_2x2(x.clone());
                prep.finish(x, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::max_pool_2x2(x)),
        }
    }

    fn max_pool_2x2_backward(
        _x: FloatTensor<Self>,
        _output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        unreachable!("the max pooling's gradient is not itself differentiated")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::{Distribution, Tolerance};

    /// Output and input gradient of [`max_pool2d`] against burn's `MaxPool2d::forward`, with a
    /// random upstream gradient, exactly.
    fn compare(input: [usize; 4]) {
        let device = Device::flex().autodiff();
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        let x0 = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<4>::random(
            pool.forward(x0.clone()).shape(),
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let run = |ours: bool| {
            let x = x0.clone().detach().require_grad();
            let y = if ours {
                max_pool2d(&pool, x.clone())
            } else {
                pool.forward(x.clone())
            };
            let grads = (y.clone() * upstream.clone()).sum().backward();
            (
                y.into_data(),
                x.grad(&grads).expect("input gradient").into_data(),
            )
        };
        let (ours, theirs) = (run(true), run(false));
        // Exact: a maximum is one of the inputs, a gradient is copied.
        ours.0
            .assert_approx_eq::<f32>(&theirs.0, Tolerance::absolute(0.0));
        ours.1
            .assert_approx_eq::<f32>(&theirs.1, Tolerance::absolute(0.0));
    }

    #[test]
    fn matches_burn_on_even_and_odd_sides() {
        compare([3, 4, 8, 12]);
        compare([2, 3, 7, 9]);
        compare([1, 1, 2, 2]);
        compare([2, 16, 64, 96]);
    }

    #[test]
    fn ties_go_to_the_first_value_and_nan_wins() {
        assert_eq!(argmax([1.0, 1.0, 1.0, 1.0]), 0);
        assert_eq!(argmax([0.0, 2.0, 2.0, 1.0]), 1);
        assert_eq!(argmax([0.0, 2.0, f32::NAN, 3.0]), 2);
        assert_eq!(argmax([f32::NAN, 2.0, f32::NAN, 3.0]), 0);
    }

    #[test]
    fn other_pools_take_burns_op() {
        let device = Device::flex().autodiff();
        let pool = MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init();
        let x = Tensor::<4>::random([1, 2, 9, 9], Distribution::Normal(0.0, 1.0), &device);
        max_pool2d(&pool, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&pool.forward(x).into_data(), Tolerance::absolute(0.0));
    }
}
