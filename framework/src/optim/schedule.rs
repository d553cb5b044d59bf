//! The learning-rate schedule: linear warmup from 0, then cosine decay to 0 (paper, Section 3.3).
//! Our own function because burn's schedulers reject initial rates above 1.0 (BURN.md) and
//! LARS at batch 4096 uses 3.2.

/// The peak learning rate: `base_lr * global_batch / 256` when scaling, else `base_lr`.
pub fn peak_lr(base_lr: f64, global_batch: usize, scale_by_batch: bool) -> f64 {
    if scale_by_batch {
        base_lr * global_batch as f64 / 256.0
    } else {
        base_lr
    }
}

/// The lr at optimizer step `k` of `total`: `peak * k / warmup` during the first `warmup`
/// steps, then `peak * (1 + cos(pi (k - warmup) / (total - warmup))) / 2`; 0 at `k >= total`.
pub fn warmup_cosine_lr(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step >= total {
        return 0.0;
    }
    if step < warmup {
        return peak * step as f64 / warmup as f64;
    }
    let span = (total - warmup).max(1) as f64;
    let progress = (step - warmup) as f64 / span;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// The learning rate of each optimizer step of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    /// The same rate at every step (the benchmark workloads, as their PyTorch twins).
    Constant(f64),
    /// Linear warmup from 0 over `warmup_steps`, then cosine decay to 0 at `total_steps`
    /// ([`warmup_cosine_lr`]; paper, Section 3.3).
    WarmupCosine {
        /// The rate reached at the end of the warmup ([`peak_lr`]).
        peak: f64,
        /// Optimizer steps of linear warmup.
        warmup_steps: usize,
        /// Optimizer steps in the whole run.
        total_steps: usize,
    },
}

impl LrSchedule {
    /// The rate of optimizer step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        match *self {
            LrSchedule::Constant(lr) => lr,
            LrSchedule::WarmupCosine {
                peak,
                warmup_steps,
                total_steps,
            } => warmup_cosine_lr(peak, step, warmup_steps, total_steps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_points() {
        assert_eq!(warmup_cosine_lr(1.0, 0, 10, 100), 0.0);
        assert!((warmup_cosine_lr(1.0, 5, 10, 100) - 0.5).abs() < 1e-12);
        assert!((warmup_cosine_lr(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine_lr(1.0, 55, 10, 100) - 0.5).abs() < 1e-12);
        assert!(warmup_cosine_lr(1.0, 99, 10, 100) < 0.01);
        assert_eq!(warmup_cosine_lr(1.0, 100, 10, 100), 0.0);
        assert!((warmup_cosine_lr(2.0, 0, 0, 100) - 2.0).abs() < 1e-12);
        assert!((peak_lr(0.2, 4096, true) - 3.2).abs() < 1e-12);
        assert_eq!(peak_lr(0.2, 4096, false), 0.2);
        let s = LrSchedule::WarmupCosine {
            peak: 1.0,
            warmup_steps: 10,
            total_steps: 100,
        };
        assert_eq!(s.at(55), warmup_cosine_lr(1.0, 55, 10, 100));
        assert_eq!(LrSchedule::Constant(0.3).at(1000), 0.3);
    }
}
