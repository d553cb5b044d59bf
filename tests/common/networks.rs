//! Networks on several devices or precisions in the tests: the same initial weights drawn
//! twice, deterministic batches, every float tensor read back, and their largest difference.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use ssl_framework::byol::{
    ByolState, OnlineNetwork, StepOutcome, StepSchedules, TargetEma, Views, update,
};
use ssl_framework::config::Precision;
use ssl_framework::optim::LrSchedule;
use ssl_framework::replicas::{ReplicaGroup, parameter_checksum};
use ssl_vision::encoders::VisionEncoder;
use std::convert::Infallible;
use std::sync::Mutex;

/// `build` on the autodiff CPU device seeded with `seed`, every parameter drawn right away
/// (burn draws them at their first use). Two calls give equal, independent modules: the way to
/// put the same weights on two devices (`clone()` would share BatchNorm's running statistics,
/// and `fork` moves those shared cells, BURN.md). The draws hold a lock: burn's random stream is
/// the process's, and the tests run in parallel.
pub fn drawn<M: Module>(seed: u64, build: impl FnOnce(&Device) -> M) -> M {
    static DRAWING: Mutex<()> = Mutex::new(());
    let _drawing = DRAWING.lock().unwrap_or_else(|e| e.into_inner());
    let cpu = Device::flex().autodiff();
    cpu.seed(seed);
    let module = build(&cpu);
    let _ = parameter_checksum(&module, false);
    module
}

/// A tensor read to the host, with its module path (`encoder.blocks.0.bn.running_var`).
pub type Named = (String, Vec<f32>);

/// Every float tensor of `module` (parameters and BatchNorm statistics) in the module's order,
/// read to the host, or, with `grads`, the gradient of each parameter that has one.
pub fn float_tensors<M: Module>(module: &M, grads: Option<&GradientsParams>) -> Vec<Named> {
    struct Collect<'a>(Vec<String>, Vec<Named>, Option<&'a GradientsParams>);
    impl ModuleVisitor for Collect<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let t = match self.2 {
                Some(grads) => match grads.get::<D>(p.id) {
                    Some(g) => g,
                    None => return,
                },
                None => p.val(),
            };
            let values = t.into_data().convert::<f32>().try_into_vec::<f32>();
            self.1.push((self.0.join("."), values.unwrap()));
        }
    }
    let mut c = Collect(Vec::new(), Vec::new(), grads);
    module.visit(&mut c);
    c.1
}

/// The largest difference between two lists of tensors, each relative to the largest magnitude
/// of its tensor in `b`, or to a hundredth of the largest magnitude of all of `b` where that is
/// more (a tensor that is about zero, such as the gradient of a convolution's bias before
/// BatchNorm, which is zero but for rounding, is compared at the scale of the others), and where
/// it is (path, element, value in `a`, in `b`).
pub fn largest_difference(a: &[Named], b: &[Named]) -> (f32, String) {
    assert_eq!(a.len(), b.len(), "the same tensors on both devices");
    let largest = |t: &[f32]| t.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let floor = b.iter().fold(1e-6f32, |m, (_, y)| m.max(largest(y))) * 1e-2;
    let mut worst = (0.0f32, String::new());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        let scale = largest(y).max(floor);
        for (i, (u, v)) in x.iter().zip(y).enumerate() {
            let d = (u - v).abs() / scale;
            assert!(d.is_finite(), "{name}[{i}]: {u} against {v}");
            if d > worst.0 {
                worst = (
                    d,
                    format!("{name}[{i}] {u} against {v} (largest |value| {scale})"),
                );
            }
        }
    }
    worst
}

/// A deterministic batch of `shape` for `(step, view)`: the same values on every device.
pub fn values_of(shape: &[usize], step: usize, view: usize) -> TensorData {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| {
            let h = (i as u64 + 1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(((step * 2 + view) as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
            ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 + (i % 7) as f32 * 0.1
        })
        .collect::<Vec<f32>>();
    TensorData::new(v, shape.to_vec())
}

/// The cosine of the angle between two updates, and the ratio of their lengths.
pub fn compare_updates(a: &[f32], b: &[f32]) -> (f64, f64) {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    (dot / (norm(a) * norm(b)), norm(a) / norm(b))
}

/// SGD with momentum 0.9 (no dampening), as the step tests train.
pub fn sgd() -> ModuleOptimizer {
    ModuleOptimizer::from(
        SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
            ))
            .build(),
    )
}

/// The trainable tensors (no BatchNorm statistics) of a state's online and target networks,
/// flattened.
pub fn trainable(state: &ByolState<VisionEncoder>) -> Vec<f32> {
    let mut all = float_tensors(&state.online.valid(), None);
    all.extend(float_tensors(&state.target.valid(), None));
    all.into_iter()
        .filter(|(p, _)| !p.contains("running_"))
        .flat_map(|(_, t)| t)
        .collect()
}

/// The first update of `network` (drawn with seed 5 on the CPU, then forked to `device`, an
/// autodiff device) in `precision` from `accumulation` micro-batches of `image` ([`values_of`]),
/// SGD ([`sgd`]) at lr 0.05 and tau 0.9, the step retried after an f16 overflow: the step's loss,
/// the update of every trainable tensor of both networks ([`trainable`]), and the state after.
pub fn first_update(
    network: impl Fn(&Device) -> OnlineNetwork<VisionEncoder>,
    device: &Device,
    precision: Precision,
    image: [usize; 4],
    accumulation: usize,
) -> (f64, Vec<f32>, ByolState<VisionEncoder>) {
    let mut state = ByolState::new(drawn(5, network).fork(device), sgd());
    let start = trainable(&state);
    let schedules = StepSchedules {
        lr: LrSchedule::Constant(0.05),
        ema: TargetEma::constant(0.9),
        accumulation,
        precision,
    };
    loop {
        let micro_batches = (0..accumulation).map(|m| {
            Ok::<_, Infallible>(Views {
                view1: Tensor::<4>::from_data(values_of(&image, m, 0), device),
                view2: Tensor::<4>::from_data(values_of(&image, m, 1), device),
                labels: Vec::new(),
            })
        });
        let (next, outcome) = update(
            state,
            micro_batches,
            &schedules,
            false,
            &ReplicaGroup::single(),
        )
        .expect("a step");
        state = next;
        match outcome {
            StepOutcome::Updated { loss, .. } => {
                let update = trainable(&state)
                    .iter()
                    .zip(&start)
                    .map(|(a, b)| a - b)
                    .collect();
                return (loss.total, update, state);
            }
            StepOutcome::Overflow { .. } if precision == Precision::F16 => {}
            other => panic!("{precision:?}: {other:?}"),
        }
    }
}
