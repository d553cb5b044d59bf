//! Data parallelism with ranks as threads of one process (`ThreadReplicas`; the MPI ranks of
//! `mpirun -np N ssl train` run the same code with MPI's collectives, tests/mpi.rs): the BYOL
//! step on 2 ranks, each with half of a global batch, against one process with the whole
//! batch, from the same initial weights, on the small CNN with the paper's MLP heads (whose
//! BatchNorms, like the encoder's, are synchronized).

use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use ssl_framework::byol::{
    ByolState, OnlineNetwork, StepOutcome, StepSchedules, TargetEma, Views, update,
};
use ssl_framework::config::{ByolConfig, Precision};
use ssl_framework::optim::LrSchedule;
use ssl_framework::replicas::{ReplicaGroup, ThreadReplicas, parameter_checksum};
use ssl_vision::encoders::{SmallCnn, VisionEncoder};
use std::convert::Infallible;
use std::sync::Arc;

const BATCH: usize = 16;
const STEPS: usize = 10;

/// The same initial networks at every call: the device's random stream is shared by every
/// thread of the process (the tests run in parallel), so seeding and drawing hold a lock.
fn initial_state() -> ByolState<VisionEncoder> {
    static DRAWING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _drawing = DRAWING.lock().unwrap_or_else(|e| e.into_inner());
    let ad = Device::flex().autodiff();
    ad.seed(3);
    let byol = ByolConfig {
        projector_hidden: 64,
        projection_dim: 32,
        predictor_hidden: 64,
        predictor: true,
        tau_base: 0.99,
        tau_schedule: Default::default(),
    };
    let encoder = VisionEncoder::SmallCnn(SmallCnn::new(3, &[8, 16, 32], &[1, 2, 2], &ad));
    let online = OnlineNetwork::new(encoder, &byol, &ad);
    // burn draws parameters lazily, at their first use: draw them all now, from this seed.
    let _ = parameter_checksum(&online, false);
    ByolState::new(online, optimizer())
}

fn optimizer() -> ModuleOptimizer {
    ModuleOptimizer::from(
        SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
            ))
            .build(),
    )
}

fn schedules() -> StepSchedules {
    StepSchedules {
        lr: LrSchedule::Constant(0.02),
        ema: TargetEma::constant(0.9),
        accumulation: 1,
        precision: Precision::F32,
    }
}

/// The global batch of `step`: two views `[BATCH, 3, 16, 16]`, the same for every caller.
fn batch(step: usize) -> (Tensor<4>, Tensor<4>) {
    let ad = Device::flex().autodiff();
    let n = BATCH * 3 * 16 * 16;
    let value = |i: usize, view: usize| {
        let h = (i as u64 + 1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(((step * 2 + view) as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 + (i % 7) as f32 * 0.1
    };
    let view = |v: usize| {
        Tensor::<4>::from_data(
            TensorData::new(
                (0..n).map(|i| value(i, v)).collect::<Vec<f32>>(),
                [BATCH, 3, 16, 16],
            ),
            &ad,
        )
    };
    (view(0), view(1))
}

/// `STEPS` steps of one rank (rows `rank * BATCH / ranks ..` of each global batch): the loss and
/// the networks' checksum after each step, and the final online network's parameters.
fn train(mut state: ByolState<VisionEncoder>, group: &ReplicaGroup) -> Trained {
    let per_rank = BATCH / group.ranks();
    let (mut losses, mut sums) = (Vec::new(), Vec::new());
    for step in 0..STEPS {
        let (v1, v2) = batch(step);
        let start = group.rank() * per_rank;
        let views = Views {
            view1: v1.narrow(0, start, per_rank),
            view2: v2.narrow(0, start, per_rank),
            labels: Vec::new(),
        };
        let (next, outcome) = update(
            state,
            std::iter::once(Ok::<_, Infallible>(views)),
            &schedules(),
            false,
            group,
        )
        .expect("a step");
        state = next;
        let StepOutcome::Updated { loss, .. } = outcome else {
            panic!("step {step}: {outcome:?}")
        };
        losses.push(loss.total);
        sums.push(
            parameter_checksum(&state.online.valid(), false)
                ^ parameter_checksum(&state.target.valid(), false).rotate_left(1),
        );
    }
    let mut params = Vec::new();
    struct Collect<'a>(&'a mut Vec<f32>);
    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            self.0.extend(
                p.val()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap(),
            );
        }
    }
    let trainable = parameter_checksum(&state.online, true);
    state.online.valid().visit(&mut Collect(&mut params));
    (losses, sums, params, trainable)
}

/// Per step the loss and the networks' checksum; then the online network's float tensors and
/// the checksum of its trainable parameters.
type Trained = (Vec<f64>, Vec<u64>, Vec<f32>, u64);

/// Each rank builds its replica from the same seed, as an MPI rank does (clones of one module
/// would share burn's BatchNorm running-statistic cells between the threads), one after the
/// other (the device's random stream is shared by the threads).
fn two_ranks(sync_batch_norm: bool) -> Vec<Trained> {
    let replicas: Vec<ByolState<VisionEncoder>> = (0..2).map(|_| initial_state()).collect();
    assert_eq!(
        parameter_checksum(&replicas[0].online, false),
        parameter_checksum(&replicas[1].online, false),
        "the replicas start equal"
    );
    std::thread::scope(|s| {
        let joins: Vec<_> = ThreadReplicas::group(2)
            .into_iter()
            .zip(replicas)
            .map(|(r, replica)| {
                let group = ReplicaGroup::new(Arc::new(r), sync_batch_norm);
                s.spawn(move || train(replica, &group))
            })
            .collect();
        joins
            .into_iter()
            .map(|j| j.join().expect("a rank"))
            .collect()
    })
}

#[test]
fn two_ranks_with_sync_batch_norm_equal_one_process_with_the_global_batch() {
    let (single_losses, _, single_params, _) = train(initial_state(), &ReplicaGroup::single());
    let ranks = two_ranks(true);
    // Bit-identical replicas after every step.
    assert_eq!(ranks[0].1, ranks[1].1, "the replicas' checksums differ");
    assert_eq!(ranks[0].0, ranks[1].0, "the ranks report different losses");
    // The same training as one process, up to float summation order.
    for (step, (a, b)) in ranks[0].0.iter().zip(&single_losses).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "step {}: loss {a} on 2 ranks, {b} in one process",
            step + 1
        );
    }
    // Parameters and BatchNorm statistics, relative to their size.
    let max_diff = ranks[0]
        .2
        .iter()
        .zip(&single_params)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0f32, f32::max);
    eprintln!("largest difference from one process after {STEPS} steps: {max_diff:e}");
    assert!(
        max_diff < 1e-4,
        "parameters after {STEPS} steps differ by {max_diff}"
    );
    // The losses moved: the comparison is of training, not of a constant.
    assert!(single_losses[0] != single_losses[STEPS - 1]);
}

#[test]
fn without_sync_batch_norm_the_ranks_normalize_alone() {
    let (single_losses, _, _, _) = train(initial_state(), &ReplicaGroup::single());
    let ranks = two_ranks(false);
    // Each rank's BatchNorm sees its half: the first loss already differs from one process's.
    assert!(
        (ranks[0].0[0] - single_losses[0]).abs() > 1e-5,
        "{} vs {}",
        ranks[0].0[0],
        single_losses[0]
    );
    // The averaged gradients still keep the replicas' parameters identical (their BatchNorm
    // running statistics are their own).
    let trainable_equal = ranks[0].3 == ranks[1].3;
    assert!(trainable_equal, "the replicas' parameters differ");
}
