//! Weighted kNN classification on cosine similarity (Wu et al. 2018, "Unsupervised Feature
//! Learning via Non-Parametric Instance Discrimination", Section 3.4; the kNN monitor of lightly
//! and solo-learn): each of the `k` nearest training features votes for its class with weight
//! `exp(cos / T)`.

use super::features::Features;
use burn::prelude::*;
use rayon::prelude::*;

fn normalized(f: &Features) -> Vec<f32> {
    let mut out = f.data.clone();
    for row in out.chunks_mut(f.dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// Top-1 accuracy in `[0, 1]` of weighted kNN with `k` neighbours (clamped to the training
/// size) and temperature `temperature`. Similarities are computed on `device` in chunks of test
/// rows; neighbour selection runs on the host.
///
/// Panics if the widths differ or a label is `>= classes` (programming errors).
#[allow(clippy::too_many_arguments)]
pub fn knn_top1(
    train: &Features,
    train_labels: &[usize],
    test: &Features,
    test_labels: &[usize],
    classes: usize,
    k: usize,
    temperature: f64,
    device: &Device,
) -> f64 {
    assert_eq!(train.dim, test.dim, "feature widths differ");
    let (n, m, d) = (train.len(), test.len(), train.dim);
    if m == 0 || n == 0 {
        return 0.0;
    }
    let k = k.min(n);
    let train_t =
        Tensor::<2>::from_data(TensorData::new(normalized(train), [n, d]), device).transpose();
    let test_n = normalized(test);
    let chunk = 256;
    let mut correct = 0usize;
    for start in (0..m).step_by(chunk) {
        let rows = chunk.min(m - start);
        let q = Tensor::<2>::from_data(
            TensorData::new(test_n[start * d..(start + rows) * d].to_vec(), [rows, d]),
            device,
        );
        let sims = q
            .matmul(train_t.clone())
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32");
        // Each test row's neighbours and vote on its own (rows in parallel, the same result
        // whatever the threads).
        correct += sims
            .par_chunks(n)
            .enumerate()
            .map_init(
                || (Vec::with_capacity(n), vec![0f64; classes]),
                |(idx, votes): &mut (Vec<usize>, Vec<f64>), (r, s)| {
                    idx.clear();
                    idx.extend(0..n);
                    if k < n {
                        idx.select_nth_unstable_by(k - 1, |a, b| s[*b].total_cmp(&s[*a]));
                    }
                    votes.iter_mut().for_each(|v| *v = 0.0);
                    for &j in &idx[..k] {
                        votes[train_labels[j]] += ((s[j] as f64) / temperature).exp();
                    }
                    let pred = votes
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(c, _)| c)
                        .unwrap_or(0);
                    usize::from(pred == test_labels[start + r])
                },
            )
            .sum::<usize>();
    }
    correct as f64 / m as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_clusters_are_classified_and_noise_is_not() {
        let device = Device::flex();
        // Two classes along two axes, with the test points near their class's axis.
        let mut train = Vec::new();
        let mut labels = Vec::new();
        for i in 0..50 {
            let e = (i as f32) * 0.01;
            train.extend_from_slice(&[1.0, e, 0.0]);
            labels.push(0);
            train.extend_from_slice(&[e, 1.0, 0.0]);
            labels.push(1);
        }
        let train = Features {
            data: train,
            dim: 3,
        };
        let test = Features {
            data: vec![0.9, 0.1, 0.0, 0.1, 0.9, 0.0, 1.0, -0.2, 0.0],
            dim: 3,
        };
        let acc = knn_top1(&train, &labels, &test, &[0, 1, 0], 2, 10, 0.1, &device);
        assert_eq!(acc, 1.0);
        let acc = knn_top1(&train, &labels, &test, &[1, 0, 1], 2, 10, 0.1, &device);
        assert_eq!(acc, 0.0);
        // k larger than the training set is clamped.
        let acc = knn_top1(&train, &labels, &test, &[0, 1, 0], 2, 1000, 0.01, &device);
        assert!(acc >= 2.0 / 3.0);
    }
}
