//! The EMA rate schedule (paper, Section 3.2).

/// `tau(k) = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2` for optimizer step `k` of `K` in the
/// whole run (not per epoch). `tau(0) = tau_base`, `tau(K) = 1`; `k > K` is clamped.
pub fn tau_at(tau_base: f64, step: usize, total_steps: usize) -> f64 {
    if total_steps == 0 {
        return 1.0;
    }
    let progress = (step.min(total_steps) as f64) / (total_steps as f64);
    1.0 - (1.0 - tau_base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_points_and_monotone() {
        assert!((tau_at(0.996, 0, 1000) - 0.996).abs() < 1e-12);
        assert!((tau_at(0.996, 1000, 1000) - 1.0).abs() < 1e-12);
        assert!((tau_at(0.996, 500, 1000) - 0.998).abs() < 1e-12);
        assert!((tau_at(0.996, 5000, 1000) - 1.0).abs() < 1e-12);
        let mut prev = 0.0;
        for k in 0..=100 {
            let t = tau_at(0.9, k, 100);
            assert!(t >= prev);
            prev = t;
        }
    }
}
