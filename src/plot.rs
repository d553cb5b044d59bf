//! The training curves of a run (`training.svg`): loss, learning rate, tau and the collapse
//! metric against the optimizer step, read from `metrics.jsonl`.

use anyhow::{Context, Result};
use plotters::prelude::*;
use ssl_framework::train::metrics::{MetricsRecord, read_metrics};
use std::path::Path;

type Field = fn(&MetricsRecord) -> f64;

/// Draws the four curves of `metrics` (a `metrics.jsonl`) into the SVG file `out` (written
/// atomically). Returns `false`, writing nothing, when the log has no record.
///
/// # Errors
/// The log cannot be read, or the SVG cannot be drawn or written (naming the file).
pub fn write_training_plot(metrics: &Path, out: &Path) -> Result<bool> {
    let records = read_metrics(metrics).with_context(|| metrics.display().to_string())?;
    if records.is_empty() {
        return Ok(false);
    }
    let panels: [(&str, Field); 4] = [
        ("BYOL loss", |r| r.loss),
        ("learning rate", |r| r.lr),
        ("tau (EMA rate of the target)", |r| r.tau),
        ("collapse metric (std of normalized projections)", |r| {
            r.collapse_std
        }),
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 800)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (area, (name, field)) in root.split_evenly((2, 2)).iter().zip(panels) {
            let points: Vec<(f64, f64)> = records
                .iter()
                .map(|r| (r.step as f64, field(r)))
                .filter(|p| p.1.is_finite())
                .collect();
            let (x0, x1) = (
                points.first().map(|p| p.0).unwrap_or(0.0),
                points.last().map(|p| p.0).unwrap_or(1.0),
            );
            let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-3).max(1e-12);
            let mut chart = ChartBuilder::on(area)
                .caption(name, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1.max(x0 + 1.0), (lo - pad)..(hi + pad))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            chart
                .configure_mesh()
                .x_desc("optimizer step")
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            chart
                .draw_series(LineSeries::new(points, &BLUE))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    ssl_framework::fsutil::write_atomic(out, svg.as_bytes())
        .with_context(|| out.display().to_string())?;
    Ok(true)
}
