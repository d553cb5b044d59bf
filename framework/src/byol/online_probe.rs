//! The online linear probe: a linear classifier on the online encoder's representation `y = f(v)`
//! of view 1, trained beside BYOL on the labelled samples of each batch with the representation's
//! gradient stopped, so it never changes the encoder (as deepmind's BYOL code, solo-learn and
//! DABS do). Each batch is scored before the probe learns from it, so its running accuracy is
//! measured on samples it has not yet been fitted to: a cheap label-based monitor during
//! training, beside the collapse metrics. The final kNN and linear probes on frozen features
//! remain the evaluation.
//!
//! The probe is softmax regression, `logits = y W + b`, with the cross-entropy's exact gradient
//! (`dL/dlogits = softmax(logits) - onehot(label)`, averaged over the labelled rows) and Adam
//! (Kingma & Ba 2015, Algorithm 1; beta1 0.9, beta2 0.999, eps 1e-8), all in f32 on the
//! representation's device without autodiff. Weights start at zero, so the probe draws no random
//! numbers and a resumed run's probe continues exactly from its checkpoint.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// The online probe's parameters, Adam moments and running accuracy.
pub struct OnlineProbe {
    /// Weight `W`, `[dim, classes]`.
    weight: Tensor<2>,
    /// Bias `b`, `[classes]`.
    bias: Tensor<1>,
    /// Adam's first and second moments of `W` and `b`.
    moments: [Tensor<2>; 2],
    bias_moments: [Tensor<1>; 2],
    /// Adam steps taken.
    updates: u64,
    /// Learning rate.
    lr: f64,
    /// Correct predictions since the last [`OnlineProbe::take_accuracy`] (a device scalar,
    /// read only then) and the labelled samples they were made on.
    correct: Option<Tensor<1>>,
    seen: usize,
}

/// An [`OnlineProbe`] as stored in a checkpoint (`online_probe.json`): every value as its f32
/// bit pattern, so a resumed run continues bit for bit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineProbeRecord {
    /// Representation size.
    pub dim: usize,
    /// Classes.
    pub classes: usize,
    /// Adam steps taken.
    pub updates: u64,
    /// The running count since the last metrics line: correct predictions (as
    /// `f32::to_bits`, `None` before any) and labelled samples seen, so that a run resumed
    /// from a checkpoint between two metrics lines logs what the uninterrupted one did.
    #[serde(default)]
    pub correct: Option<u32>,
    /// Labelled samples seen since the last metrics line.
    #[serde(default)]
    pub seen: usize,
    /// `W`, `b`, then the moments of `W` (first, second) and of `b` (first, second), row-major,
    /// as `f32::to_bits`.
    pub values: Vec<u32>,
}

impl OnlineProbe {
    /// A probe of `classes` classes on `dim`-wide representations, all zero, on `device` (the
    /// representation's device without autodiff).
    pub fn new(dim: usize, classes: usize, lr: f64, device: &Device) -> Self {
        let z2 = || Tensor::<2>::zeros([dim, classes], device);
        let z1 = || Tensor::<1>::zeros([classes], device);
        Self {
            weight: z2(),
            bias: z1(),
            moments: [z2(), z2()],
            bias_moments: [z1(), z1()],
            updates: 0,
            lr,
            correct: None,
            seen: 0,
        }
    }

    /// A probe of the same size, learning rate and device, all zero.
    pub fn fresh(&self) -> Self {
        Self::new(self.dim(), self.classes(), self.lr, &self.weight.device())
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        self.bias.dims()[0]
    }

    /// Representation size.
    pub fn dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Scores the batch, then takes one Adam step on it. `features`: `[batch, dim]` (detached
    /// here); `labels`: one per row, `< classes` or `None` for an unlabelled row (left out).
    /// A batch without a labelled row changes nothing.
    pub fn observe(&mut self, features: Tensor<2>, labels: &[Option<usize>]) {
        let [rows, dim] = features.dims();
        let classes = self.classes();
        debug_assert_eq!(rows, labels.len());
        // Rows with a label in range; a batch without one changes nothing. (`dim` is the
        // encoder's, which the probe was made for.)
        let labelled = labels
            .iter()
            .filter(|l| l.is_some_and(|c| c < classes))
            .count();
        if labelled == 0 || dim != self.dim() {
            return;
        }
        let h = features.detach().without_autodiff();
        let device = h.device();
        let mut onehot = vec![0f32; rows * classes];
        let mut mask = vec![0f32; rows];
        let mut class = vec![0i64; rows];
        for (r, l) in labels.iter().enumerate() {
            if let Some(c) = *l
                && c < classes
            {
                onehot[r * classes + c] = 1.0;
                mask[r] = 1.0;
                class[r] = c as i64;
            }
        }
        let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [rows, classes]), &device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, 1]), &device);
        let class = Tensor::<2, Int>::from_data(TensorData::new(class, [rows, 1]), &device);
        let logits = h.clone().matmul(self.weight.clone()) + self.bias.clone().unsqueeze_dim(0);
        // Correct: the prediction (the first class of highest logit) is the label.
        let hit = logits
            .clone()
            .argmax(1)
            .equal(class)
            .float()
            .mul(mask.clone())
            .sum();
        self.correct = Some(match self.correct.take() {
            Some(c) => c + hit,
            None => hit,
        });
        self.seen += labelled;
        let g = (softmax(logits, 1) - onehot)
            .mul(mask)
            .div_scalar(labelled as f64);
        let grad_w = h.transpose().matmul(g.clone());
        let grad_b = g.sum_dim(0).squeeze_dim::<1>(0);
        self.updates += 1;
        let t = self.updates as i32;
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        let step = self.lr / c1;
        let (weight, moments) = adam(self.weight.clone(), self.moments.clone(), grad_w, step, c2);
        (self.weight, self.moments) = (weight, moments);
        let (bias, moments) = adam(
            self.bias.clone(),
            self.bias_moments.clone(),
            grad_b,
            step,
            c2,
        );
        (self.bias, self.bias_moments) = (bias, moments);
    }

    /// The top-1 accuracy in `[0, 1]` of the batches observed since the last call (each scored
    /// before the probe learned from it), and resets the count; `None` when none was labelled.
    /// Reads one scalar from the device.
    pub fn take_accuracy(&mut self) -> Option<f64> {
        let seen = std::mem::take(&mut self.seen);
        let correct = self.correct.take()?;
        let c = correct
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .ok()?
            .first()
            .copied()?;
        (seen > 0).then(|| c as f64 / seen as f64)
    }

    /// The probe's state for a checkpoint, its running accuracy included.
    pub fn record(&self) -> OnlineProbeRecord {
        let mut values = Vec::new();
        let mut push = |t: Vec<f32>| values.extend(t.into_iter().map(f32::to_bits));
        let read2 = |t: &Tensor<2>| {
            t.to_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        };
        let read1 = |t: &Tensor<1>| {
            t.to_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        };
        push(read2(&self.weight));
        push(read1(&self.bias));
        push(read2(&self.moments[0]));
        push(read2(&self.moments[1]));
        push(read1(&self.bias_moments[0]));
        push(read1(&self.bias_moments[1]));
        let correct = self.correct.as_ref().and_then(|c| {
            c.to_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .ok()?
                .first()
                .map(|v| v.to_bits())
        });
        OnlineProbeRecord {
            dim: self.dim(),
            classes: self.classes(),
            updates: self.updates,
            correct,
            seen: self.seen,
            values,
        }
    }

    /// Loads a checkpoint's probe state.
    ///
    /// # Errors
    /// A message when the record's sizes differ from this probe's (another label set or
    /// encoder).
    pub fn load(&mut self, r: &OnlineProbeRecord) -> Result<(), String> {
        let (d, c) = (self.dim(), self.classes());
        if (r.dim, r.classes) != (d, c) || r.values.len() != 3 * d * c + 3 * c {
            return Err(format!(
                "the stored online probe is {} x {} ({} values), this run's is {d} x {c}",
                r.dim,
                r.classes,
                r.values.len()
            ));
        }
        let device = self.weight.device();
        let v: Vec<f32> = r.values.iter().map(|&b| f32::from_bits(b)).collect();
        let dc = d * c;
        let t2 = |s: &[f32]| Tensor::<2>::from_data(TensorData::new(s.to_vec(), [d, c]), &device);
        let t1 = |s: &[f32]| Tensor::<1>::from_data(TensorData::new(s.to_vec(), [c]), &device);
        self.weight = t2(&v[..dc]);
        self.bias = t1(&v[dc..dc + c]);
        let rest = &v[dc + c..];
        self.moments = [t2(&rest[..dc]), t2(&rest[dc..2 * dc])];
        let rest = &rest[2 * dc..];
        self.bias_moments = [t1(&rest[..c]), t1(&rest[c..2 * c])];
        self.updates = r.updates;
        self.correct = r.correct.map(|c| {
            Tensor::<1>::from_data(TensorData::new(vec![f32::from_bits(c)], [1]), &device)
        });
        self.seen = r.seen;
        Ok(())
    }
}

/// One Adam step of `param` with gradient `grad` and moments `[m, v]`: `step` is the learning
/// rate over the first moment's bias correction, `c2` the second's (`1 - beta2^t`). Returns the
/// new parameter and moments.
fn adam<const D: usize>(
    param: Tensor<D>,
    [m, v]: [Tensor<D>; 2],
    grad: Tensor<D>,
    step: f64,
    c2: f64,
) -> (Tensor<D>, [Tensor<D>; 2]) {
    let m = m.mul_scalar(BETA1) + grad.clone().mul_scalar(1.0 - BETA1);
    let v = v.mul_scalar(BETA2) + grad.powi_scalar(2).mul_scalar(1.0 - BETA2);
    let param = param
        - m.clone()
            .div(v.clone().div_scalar(c2).sqrt().add_scalar(EPS))
            .mul_scalar(step);
    (param, [m, v])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two separable classes along the first feature, a third row unlabelled.
    fn batch(device: &Device) -> (Tensor<2>, Vec<Option<usize>>) {
        let x = vec![2.0f32, 0.5, -2.0, 0.3, 1.5, -0.2, -1.0, 0.1, 5.0, 5.0];
        (
            Tensor::<2>::from_data(TensorData::new(x, [5, 2]), device),
            vec![Some(0), Some(1), Some(0), Some(1), None],
        )
    }

    #[test]
    fn the_probe_learns_a_separable_batch_and_skips_unlabelled_rows() {
        let device = Device::flex();
        let mut p = OnlineProbe::new(2, 2, 0.05, &device);
        let (x, y) = batch(&device);
        p.observe(x.clone(), &y);
        // All-zero weights: every logit ties, the prediction is class 0, right for 2 of the 4
        // labelled rows.
        assert_eq!(p.take_accuracy(), Some(0.5));
        assert_eq!(p.take_accuracy(), None);
        for _ in 0..200 {
            p.observe(x.clone(), &y);
        }
        let _ = p.take_accuracy();
        p.observe(x.clone(), &y);
        assert_eq!(p.take_accuracy(), Some(1.0));
        // The weight on the first feature points to class 0.
        let w = p.record();
        let w0 = f32::from_bits(w.values[0]);
        let w1 = f32::from_bits(w.values[1]);
        assert!(w0 > 0.5 && w1 < -0.5, "{w0} {w1}");
        // A batch of unlabelled rows changes nothing.
        let before = p.record();
        p.observe(x, &[None; 5]);
        assert_eq!(p.record(), before);
        assert_eq!(p.take_accuracy(), None);
    }

    #[test]
    fn wrong_predictions_are_counted_and_the_record_round_trips() {
        let device = Device::flex();
        let mut p = OnlineProbe::new(2, 2, 0.05, &device);
        let (x, y) = batch(&device);
        for _ in 0..100 {
            p.observe(x.clone(), &y);
        }
        let _ = p.take_accuracy();
        // The same rows with their labels swapped: all wrong.
        let swapped: Vec<Option<usize>> = y.iter().map(|l| l.map(|c| 1 - c)).collect();
        p.observe(x.clone(), &swapped);
        assert_eq!(p.take_accuracy(), Some(0.0));
        // A probe loaded from the record continues exactly as the original, its running
        // accuracy included (a checkpoint between two metrics lines).
        p.observe(x.clone(), &swapped);
        let mut q = OnlineProbe::new(2, 2, 0.05, &device);
        q.load(&p.record()).unwrap();
        p.observe(x.clone(), &y);
        q.observe(x.clone(), &y);
        assert_eq!(p.record(), q.record());
        assert_eq!(p.take_accuracy(), q.take_accuracy());
        // Labels out of range are left out like unlabelled rows.
        let before = p.record();
        p.observe(x, &[Some(7); 5]);
        assert_eq!(p.record(), before);
        let mut other = OnlineProbe::new(3, 2, 0.05, &device);
        assert!(other.load(&p.record()).unwrap_err().contains("2 x 2"));
    }
}
