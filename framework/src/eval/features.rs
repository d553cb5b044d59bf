//! Feature extraction with a frozen encoder.

use crate::data::loader::{StreamSkips, WorkerError, eval_batches_of_rows};
use crate::encoder::Encoder;
use crate::modality::Modality;
use burn::prelude::*;
use std::sync::Arc;

/// Row-major features `[n, dim]` on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// `n * dim` values, row `i` at `data[i*dim..(i+1)*dim]`.
    pub data: Vec<f32>,
    /// Feature width.
    pub dim: usize,
}

impl Features {
    /// The rows `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Features {
        let mut data = Vec::with_capacity(rows.len() * self.dim);
        for &r in rows {
            data.extend_from_slice(&self.data[r * self.dim..(r + 1) * self.dim]);
        }
        Features {
            data,
            dim: self.dim,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs `encoder` (a validation copy: plain device, BatchNorm in eval mode) over `items` through
/// the deterministic `ops`, in batches of `batch_size` prepared on `workers` threads. Returns
/// `[items.len(), encoder.dim()]` features.
///
/// # Errors
/// [`WorkerError`] when a data worker fails.
pub fn extract_features<M: Modality>(
    modality: &Arc<M>,
    encoder: &M::Encoder,
    items: Arc<Vec<M::Item>>,
    ops: Arc<Vec<M::Op>>,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<Features, WorkerError> {
    let rows = Arc::new((0..items.len()).collect());
    extract_features_of_rows(
        modality, encoder, items, rows, ops, batch_size, workers, device,
    )
}

/// As [`extract_features`], for the items `rows` only (indices into `items`, in that order):
/// `[rows.len(), encoder.dim()]` features. A row whose record cannot be read holds the
/// features of the next readable one (see [`extract_readable_features`]).
///
/// # Errors
/// [`WorkerError`] when a data worker fails.
#[allow(clippy::too_many_arguments)]
pub fn extract_features_of_rows<M: Modality>(
    modality: &Arc<M>,
    encoder: &M::Encoder,
    items: Arc<Vec<M::Item>>,
    rows: Arc<Vec<usize>>,
    ops: Arc<Vec<M::Op>>,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<Features, WorkerError> {
    extract_readable_features(
        modality, encoder, items, rows, ops, batch_size, workers, device,
    )
    .map(|(features, _)| features)
}

/// As [`extract_features_of_rows`], with the positions in `rows` (sorted) whose record could
/// not be read (a file that broke after it was indexed): their rows hold the features of the
/// next readable record and must be left out of anything labelled.
///
/// # Errors
/// [`WorkerError`] when a data worker fails.
#[allow(clippy::too_many_arguments)]
pub fn extract_readable_features<M: Modality>(
    modality: &Arc<M>,
    encoder: &M::Encoder,
    items: Arc<Vec<M::Item>>,
    rows: Arc<Vec<usize>>,
    ops: Arc<Vec<M::Op>>,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<(Features, Vec<usize>), WorkerError> {
    let dim = encoder.dim();
    let mut data = Vec::with_capacity(rows.len() * dim);
    let skips = Arc::new(StreamSkips::default());
    let batches = eval_batches_of_rows(
        modality.clone(),
        items,
        rows.clone(),
        ops,
        batch_size,
        workers,
        skips.clone(),
    );
    for batch in batches {
        let input = modality.to_input(batch?, device);
        let out = encoder.forward(input);
        let values = out
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 features");
        data.extend_from_slice(&values);
    }
    let unreadable: std::collections::HashSet<usize> = skips.indices().into_iter().collect();
    let positions = if unreadable.is_empty() {
        Vec::new()
    } else {
        (0..rows.len())
            .filter(|&p| unreadable.contains(&rows[p]))
            .collect()
    };
    Ok((Features { data, dim }, positions))
}
