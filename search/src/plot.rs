//! Every plot `ssl` draws, as SVG files (plotters), written atomically:
//! - [`training_curves`]: one run's loss, learning rate, tau and collapse metric
//!   (`training.svg` of `ssl train` and of every benchmark run);
//! - [`runs_curves`] and [`accuracy_bars`]: a benchmark's loss and collapse curves per setting
//!   and its probe accuracies beside random init (`curves.svg`, `accuracy.svg`);
//! - [`search_scores`] and [`final_comparison`]: a search study's scores over time and its
//!   final comparison (`search.svg`, `final.svg`).

use crate::stats::mean_std;
use plotters::coord::Shift;
use plotters::prelude::*;
use ssl_framework::train::MetricsRecord;
use ssl_framework::train::metrics::read_metrics;
use std::path::{Path, PathBuf};

/// A plot that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct PlotError {
    /// The file being read or written.
    pub path: PathBuf,
    /// What failed.
    pub reason: String,
}

/// Distinguishable colours (Okabe-Ito, then a few more), one per series in order.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
    RGBColor(128, 0, 0),
    RGBColor(100, 100, 100),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A drawing error as text.
fn pe(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Draws an SVG of `size` with `draw` on a white background and writes it to `path`.
fn svg_file(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<(), String>,
) -> Result<(), PlotError> {
    let err = |reason: String| PlotError {
        path: path.to_path_buf(),
        reason,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(pe(e)))?;
        draw(&root).map_err(err)?;
        root.present().map_err(|e| err(pe(e)))?;
    }
    ssl_framework::fsutil::write_atomic(path, svg.as_bytes()).map_err(|e| err(e.to_string()))
}

/// The lowest and highest finite value of `v` (0 and `empty_hi` when there is none).
fn range(v: impl Iterator<Item = f64>, empty_hi: f64) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
    if lo.is_finite() {
        (lo, hi)
    } else {
        (0.0, empty_hi)
    }
}

/// One named line of `(x, y)` points.
struct Series<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
}

/// A panel of lines against the optimizer step; a legend when the series have names.
fn line_panel(area: &Area<'_>, title: &str, series: Vec<Series<'_>>) -> Result<(), String> {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = range(all().map(|p| p.0), 1.0);
    let (lo, hi) = range(all().map(|p| p.1), 1.0);
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-3).max(1e-12);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1.max(x0 + 1.0), (lo - pad)..(hi + pad))
        .map_err(pe)?;
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .draw()
        .map_err(pe)?;
    let legend = series.iter().any(|s| !s.name.is_empty());
    for (i, s) in series.into_iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(s.points, color.stroke_width(2)))
            .map_err(pe)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    if legend {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(pe)?;
    }
    Ok(())
}

type Field = fn(&MetricsRecord) -> f64;

/// The curves of a run's metrics log, by title.
const CURVES: [(&str, Field); 6] = [
    ("BYOL loss", |r| r.loss),
    ("learning rate", |r| r.lr),
    ("tau (EMA rate of the target)", |r| r.tau),
    ("collapse metric (std of normalized projections)", |r| {
        r.collapse_std
    }),
    ("effective rank of the projections (RankMe)", |r| {
        r.effective_rank
    }),
    ("online linear probe top-1 (%), training batches", |r| {
        r.online_probe_top1.map_or(f64::NAN, |a| a * 100.0)
    }),
];

/// The finite points of one field of a metrics log against the step.
fn points(records: &[MetricsRecord], field: Field) -> Vec<(f64, f64)> {
    records
        .iter()
        .map(|r| (r.step as f64, field(r)))
        .filter(|p| p.1.is_finite())
        .collect()
}

/// Draws a run's training curves (loss, learning rate, tau, the collapse metric, the
/// effective rank and the online probe's accuracy against the optimizer step) from `metrics` (a `metrics.jsonl`) into the SVG file `out`. Returns
/// `false`, writing nothing, when the log has no record.
///
/// # Errors
/// [`PlotError`] naming the log when it cannot be read, or `out` when the plot cannot be
/// drawn or written.
pub fn training_curves(metrics: &Path, out: &Path) -> Result<bool, PlotError> {
    let records = read_metrics(metrics).map_err(|e| PlotError {
        path: metrics.to_path_buf(),
        reason: e.to_string(),
    })?;
    if records.is_empty() {
        return Ok(false);
    }
    svg_file(out, (1200, 1200), |root| {
        for (area, (title, field)) in root.split_evenly((3, 2)).iter().zip(CURVES) {
            let points = points(&records, field);
            if points.is_empty() {
                // E.g. no online probe (no labels): the panel stays blank.
                continue;
            }
            let series = vec![Series { name: "", points }];
            line_panel(area, title, series)?;
        }
        Ok(())
    })?;
    Ok(true)
}

/// Draws the BYOL loss and the collapse metric against the step of several runs, one line
/// per `(name, metrics log records)`, into the SVG file `out`.
///
/// # Errors
/// [`PlotError`] when the plot cannot be drawn or written.
pub fn runs_curves(runs: &[(String, Vec<MetricsRecord>)], out: &Path) -> Result<(), PlotError> {
    svg_file(out, (1200, 520), |root| {
        for (area, (title, field)) in root.split_evenly((1, 2)).iter().zip([CURVES[0], CURVES[3]]) {
            let series = runs
                .iter()
                .map(|(name, records)| Series {
                    name,
                    points: points(records, field),
                })
                .collect();
            line_panel(area, title, series)?;
        }
        Ok(())
    })
}

/// One bar of [`accuracy_bars`]: a trained encoder's accuracy (%) as (mean, std over seeds),
/// and the random-init encoder's mean.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bar {
    /// The trained encoder's (mean, std), if measured.
    pub trained: Option<(f64, f64)>,
    /// The random-init encoder's mean, if measured.
    pub random_init: Option<f64>,
}

/// Draws one panel per `(title, bars)` (bars aligned with `names`, top to bottom): the
/// trained encoder's accuracy (%) as a horizontal bar with a ± std whisker, the random-init
/// encoder's as a red tick, into the SVG file `out`.
///
/// # Errors
/// [`PlotError`] when the plot cannot be drawn or written.
pub fn accuracy_bars(
    names: &[String],
    panels: &[(String, Vec<Bar>)],
    out: &Path,
) -> Result<(), PlotError> {
    let n = names.len();
    let size = (560 * panels.len().max(1) as u32, 140 + 34 * n as u32);
    svg_file(out, size, |root| {
        for (area, (title, bars)) in root
            .split_evenly((1, panels.len().max(1)))
            .iter()
            .zip(panels)
        {
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(190)
                .build_cartesian_2d(0f64..100f64, 0f64..n as f64)
                .map_err(pe)?;
            chart
                .configure_mesh()
                .y_labels(n * 2 + 1)
                .y_label_formatter(&|y| {
                    let i = (*y - 0.5).round();
                    if (y - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                        names[n - 1 - i as usize].clone()
                    } else {
                        String::new()
                    }
                })
                .disable_y_mesh()
                .x_desc("blue: trained encoder (mean, black: ± std over seeds); red: random init")
                .draw()
                .map_err(pe)?;
            for (i, bar) in bars.iter().enumerate().take(n) {
                let y = (n - 1 - i) as f64;
                if let Some((m, sd)) = bar.trained {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(0.0, y + 0.2), (m, y + 0.8)],
                            BLUE.mix(0.6).filled(),
                        )))
                        .map_err(pe)?;
                    if sd > 0.0 {
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                vec![(m - sd, y + 0.5), (m + sd, y + 0.5)],
                                BLACK,
                            )))
                            .map_err(pe)?;
                    }
                }
                if let Some(rm) = bar.random_init {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(rm, y + 0.1), (rm, y + 0.9)],
                            RED.stroke_width(3),
                        )))
                        .map_err(pe)?;
                }
            }
        }
        Ok(())
    })
}

/// One finished rung of a search trial, for [`search_scores`].
#[derive(Debug, Clone, Copy)]
pub struct ScorePoint {
    /// Study time at which it finished (minutes).
    pub minutes: f64,
    /// Its validation score (%).
    pub score: f64,
    /// The rung (0-based).
    pub rung: usize,
    /// A baseline (run at the full budget), not a searched trial.
    pub baseline: bool,
}

/// Draws the validation score of every finished rung against study time (searched trials as
/// dots coloured by rung, baselines as triangles, the best searched score at the top rung
/// so far as a red staircase) into the SVG file `out`; `rungs` are the rungs' step budgets.
///
/// # Errors
/// [`PlotError`] when the plot cannot be drawn or written.
pub fn search_scores(points: &[ScorePoint], rungs: &[usize], out: &Path) -> Result<(), PlotError> {
    let x1 = points.iter().map(|p| p.minutes).fold(1.0, f64::max) * 1.05;
    let (lo, hi) = range(points.iter().map(|p| p.score), 100.0);
    let pad = ((hi - lo) * 0.1).max(0.5);
    svg_file(out, (900, 520), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "validation score of every finished rung",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x1, (lo - pad)..(hi + pad))
            .map_err(pe)?;
        chart
            .configure_mesh()
            .x_desc("study time (minutes)")
            .y_desc("top-1 (%)")
            .draw()
            .map_err(pe)?;
        for (k, steps) in rungs.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.rung == k && !p.baseline)
                .map(|p| (p.minutes, p.score))
                .collect();
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(pe)?
                .label(format!("searched, {steps} steps"))
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        let baselines: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.baseline)
            .map(|p| (p.minutes, p.score))
            .collect();
        chart
            .draw_series(
                baselines
                    .into_iter()
                    .map(|p| TriangleMarker::new(p, 7, BLACK.filled())),
            )
            .map_err(pe)?
            .label("baselines (full budget)")
            .legend(|(x, y)| TriangleMarker::new((x + 8, y), 6, BLACK.filled()));
        // Best so far at the top rung.
        let top = rungs.len().saturating_sub(1);
        let mut top_pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.rung == top && !p.baseline)
            .map(|p| (p.minutes, p.score))
            .collect();
        top_pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut best = f64::NEG_INFINITY;
        let line: Vec<(f64, f64)> = top_pts
            .into_iter()
            .map(|(x, y)| {
                best = best.max(y);
                (x, best)
            })
            .collect();
        if let Some(last) = line.last() {
            let mut stairs = Vec::new();
            for (i, p) in line.iter().enumerate() {
                if i > 0 {
                    stairs.push((p.0, line[i - 1].1));
                }
                stairs.push(*p);
            }
            stairs.push((x1, last.1));
            chart
                .draw_series(LineSeries::new(stairs, RED.stroke_width(2)))
                .map_err(pe)?
                .label("best searched at the full budget")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(pe)?;
        Ok(())
    })
}

/// Draws the final comparison of a search: per `(policy, runs)`, with each run's
/// `(score, random-init score)` (fractions, `None` when not measured), a bar of the mean test
/// score (%) over seeds, a ± std whisker and a dot per seed, and one red line at the
/// random-init encoder's mean, into the SVG file `out`; `measure` names the score in the
/// caption (e.g. `top-1`).
///
/// # Errors
/// [`PlotError`] when the plot cannot be drawn or written.
pub fn final_comparison(
    finals: &[(String, Vec<(Option<f64>, Option<f64>)>)],
    measure: &str,
    out: &Path,
) -> Result<(), PlotError> {
    let n = finals.len().max(1);
    let scores = |runs: &[(Option<f64>, Option<f64>)]| -> Vec<f64> {
        runs.iter().filter_map(|r| r.0).map(|s| s * 100.0).collect()
    };
    let mut all: Vec<f64> = finals
        .iter()
        .flat_map(|(_, v)| v.iter().flat_map(|r| r.0.into_iter().chain(r.1)))
        .map(|s| s * 100.0)
        .collect();
    for (_, runs) in finals {
        let (m, sd) = mean_std(&scores(runs));
        all.extend([m - sd, m + sd]);
    }
    let (lo, hi) = range(all.into_iter(), 100.0);
    let pad = ((hi - lo) * 0.15).max(0.5);
    svg_file(out, (200 + 140 * n as u32, 480), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("final comparison: test {measure} (%)"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, (lo - pad)..(hi + pad))
            .map_err(pe)?;
        let names: Vec<String> = finals.iter().map(|(p, _)| p.clone()).collect();
        chart
            .configure_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&|x| {
                let i = (*x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                    names[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .disable_x_mesh()
            .x_desc(
                "blue bar: mean over seeds, black: ± std, dots: seeds; red: random-init encoder",
            )
            .draw()
            .map_err(pe)?;
        let base = lo - pad;
        for (i, (_, runs)) in finals.iter().enumerate() {
            let x = i as f64;
            let v = scores(runs);
            if v.is_empty() {
                continue;
            }
            let (m, sd) = mean_std(&v);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x + 0.2, base), (x + 0.8, m)],
                    BLUE.mix(0.5).filled(),
                )))
                .map_err(pe)?;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x + 0.5, m - sd), (x + 0.5, m + sd)],
                    BLACK.stroke_width(2),
                )))
                .map_err(pe)?;
            chart
                .draw_series(v.iter().enumerate().map(|(j, s)| {
                    Circle::new(
                        (x + 0.35 + 0.3 * j as f64 / v.len().max(1) as f64, *s),
                        3,
                        BLACK.filled(),
                    )
                }))
                .map_err(pe)?;
        }
        // The random-init encoder does not depend on the policy: one line across.
        let r: Vec<f64> = finals
            .iter()
            .flat_map(|(_, v)| v.iter().filter_map(|r| r.1))
            .map(|s| s * 100.0)
            .collect();
        if !r.is_empty() {
            let rm = mean_std(&r).0;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, rm), (n as f64, rm)],
                    RED.stroke_width(2),
                )))
                .map_err(pe)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: usize, loss: f64) -> MetricsRecord {
        serde_json::from_value(serde_json::json!({
            "step": step, "epoch": 0, "loss": loss, "lr": 0.1, "tau": 0.99,
            "collapse_std": 0.05, "images_per_sec": 1.0, "data_wait_fraction": 0.0
        }))
        .unwrap()
    }

    #[test]
    fn every_plot_writes_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let runs = vec![
            ("a".to_string(), vec![record(1, 2.0), record(2, 1.5)]),
            ("b".to_string(), vec![]),
        ];
        runs_curves(&runs, &dir.path().join("curves.svg")).unwrap();
        let bars = vec![Bar {
            trained: Some((50.0, 2.0)),
            random_init: Some(20.0),
        }];
        accuracy_bars(
            &["a".into()],
            &[("knn top-1".into(), bars)],
            &dir.path().join("acc.svg"),
        )
        .unwrap();
        let p = ScorePoint {
            minutes: 1.0,
            score: 40.0,
            rung: 0,
            baseline: false,
        };
        search_scores(&[p], &[10, 30], &dir.path().join("search.svg")).unwrap();
        final_comparison(
            &[("default".into(), vec![(Some(0.4), Some(0.1)), (None, None)])],
            "top-1",
            &dir.path().join("final.svg"),
        )
        .unwrap();
        for f in ["curves.svg", "acc.svg", "search.svg", "final.svg"] {
            let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(text.starts_with("<svg"), "{f}");
        }
        let missing = dir.path().join("none.jsonl");
        let e = training_curves(&missing, &dir.path().join("t.svg")).unwrap_err();
        assert!(e.to_string().contains("none.jsonl"), "{e}");
    }
}
