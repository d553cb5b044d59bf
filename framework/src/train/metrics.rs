//! The per-step metrics log: one JSON object per line (`metrics.jsonl`).

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsRecord {
    /// Optimizer steps done (1-based: the line is written after step `step`).
    pub step: usize,
    /// Epoch of that step (0-based).
    pub epoch: usize,
    /// BYOL loss of the step's last micro-batch (sum of both directions, in `[0, 8]`).
    pub loss: f64,
    /// Learning rate used by the step.
    pub lr: f64,
    /// EMA rate used by the step's target update.
    pub tau: f64,
    /// Collapse metric: std of the L2-normalized online projections (about `1/sqrt(dim)` when
    /// healthy, 0 when collapsed).
    pub collapse_std: f64,
    /// Effective rank (RankMe) of the same projections, at most `min(batch, projection_dim)`;
    /// falls when the outputs span few directions (dimensional collapse). NaN in logs written
    /// before it was recorded.
    #[serde(default = "not_recorded")]
    pub effective_rank: f64,
    /// Training samples per second (each sample gives two views) since the previous line.
    pub images_per_sec: f64,
    /// Fraction of time since the previous line that the trainer waited for data.
    pub data_wait_fraction: f64,
    /// Whether the collapse metric is below the collapse threshold.
    #[serde(default)]
    pub collapsed: bool,
    /// Top-1 accuracy in `[0, 1]` of the online linear probe on the labelled training samples
    /// since the previous line, each scored before the probe learned from it
    /// (`byol::online_probe`); absent without labels or with `eval.online_probe = false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_probe_top1: Option<f64>,
    /// `train.precision = "f16"` only: the dynamic loss scale after this step
    /// (`byol::precision::LossScale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// `train.precision = "f16"` only: optimizer steps skipped so far in the run because their
    /// scaled gradients overflowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_steps: Option<usize>,
}

fn not_recorded() -> f64 {
    f64::NAN
}

/// Appends records to a metrics log, flushing each line.
pub struct MetricsWriter {
    /// `None`: records are dropped ([`MetricsWriter::discard`]).
    file: Option<File>,
    path: PathBuf,
}

impl MetricsWriter {
    /// Opens `path` for appending, first dropping every line after step `keep_up_to` and any
    /// incomplete last line (what a resumed run must not repeat). The rewrite is atomic.
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn open(path: &Path, keep_up_to: usize) -> std::io::Result<Self> {
        if path.exists() {
            let kept: Vec<String> = BufReader::new(File::open(path)?)
                .lines()
                .map_while(Result::ok)
                .filter(|line| {
                    serde_json::from_str::<MetricsRecord>(line)
                        .map(|r| r.step <= keep_up_to)
                        .unwrap_or(false)
                })
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            crate::fsutil::write_atomic(path, text.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Self {
            file: Some(file),
            path: path.to_path_buf(),
        })
    }

    /// A writer that drops every record (the ranks of a data-parallel run other than rank 0).
    pub fn discard() -> Self {
        Self {
            file: None,
            path: PathBuf::new(),
        }
    }

    /// [`MetricsWriter::open`] when `writes`, else [`MetricsWriter::discard`].
    ///
    /// # Errors
    /// As [`MetricsWriter::open`].
    pub fn open_if(writes: bool, path: &Path, keep_up_to: usize) -> std::io::Result<Self> {
        if writes {
            Self::open(path, keep_up_to)
        } else {
            Ok(Self::discard())
        }
    }

    /// Appends one record and flushes it.
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn write(&mut self, record: &MetricsRecord) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut line = serde_json::to_string(record).expect("metrics serialize");
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|_| file.flush())
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

/// Reads every complete record of a metrics log.
///
/// # Errors
/// I/O errors opening the file.
pub fn read_metrics(path: &Path) -> std::io::Result<Vec<MetricsRecord>> {
    Ok(BufReader::new(File::open(path)?)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: usize) -> MetricsRecord {
        MetricsRecord {
            step,
            epoch: 0,
            loss: 1.0,
            lr: 0.1,
            tau: 0.99,
            collapse_std: 0.05,
            effective_rank: 30.0,
            images_per_sec: 10.0,
            data_wait_fraction: 0.0,
            collapsed: false,
            online_probe_top1: step.is_multiple_of(2).then_some(0.5),
            loss_scale: None,
            overflow_steps: None,
        }
    }

    #[test]
    fn reopen_truncates_later_steps_and_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let mut w = MetricsWriter::open(&p, 0).unwrap();
        for s in 1..=5 {
            w.write(&rec(s)).unwrap();
        }
        drop(w);
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("{\"step\": 6, \"ep");
        std::fs::write(&p, text).unwrap();
        let mut w = MetricsWriter::open(&p, 3).unwrap();
        w.write(&rec(4)).unwrap();
        let steps: Vec<usize> = read_metrics(&p).unwrap().iter().map(|r| r.step).collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
    }
}
