//! `ssl bench --config configs/bench/<name>.toml`: a config-driven benchmark. Runs every
//! setting of a grid (explicit settings and/or the cartesian product of a few keys' values)
//! for every seed with `ssl train`'s machinery, one after another, resumable (a finished run
//! is read back, an interrupted one resumes from its newest checkpoint), then writes a table
//! (Markdown and CSV: each probe's accuracy mean and std over seeds, beside random init), and
//! plots (accuracy per setting; loss and collapse curves).

use crate::cli::{
    AUDIO_DEFAULT, TEXT_DEFAULT, VISION_DEFAULT, resolve_local_data, resolve_vision_data,
};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use plotters::prelude::*;
use serde::Deserialize;
use ssl_audio::AudioModality;
use ssl_framework::checkpoint;
use ssl_framework::config::{ExperimentConfig, load_config};
use ssl_framework::modality::Modality;
use ssl_framework::train::metrics::read_metrics;
use ssl_framework::train::{RunOptions, train_and_evaluate};
use ssl_search::report::mean_std;
use ssl_text::TextModality;
use ssl_vision::VisionModality;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A benchmark file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchFile {
    /// Name (the default output folder is `runs/bench-<name>`).
    pub name: String,
    /// What the benchmark asks (printed above the table).
    #[serde(default)]
    pub description: String,
    /// `vision`, `audio` or `text`: the default of every setting.
    pub modality: String,
    /// Base config, relative to the benchmark file (default: the modality's default config):
    /// the default of every setting.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Seeds: every setting runs once per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Overrides applied to every setting (before the setting's own).
    #[serde(default)]
    pub set: Vec<String>,
    /// Explicit settings, in order.
    #[serde(default, rename = "setting")]
    pub settings: Vec<Setting>,
    /// Keys and their values: every combination becomes a setting (after the explicit ones).
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// One setting: a name and its overrides, and optionally its own modality and base config
/// (one benchmark may compare settings of several modalities).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    /// Shown in the table.
    pub name: String,
    /// `key=value` overrides, as `ssl train --set`.
    #[serde(default)]
    pub set: Vec<String>,
    /// This setting's modality (default: the file's).
    #[serde(default)]
    pub modality: Option<String>,
    /// This setting's base config, relative to the benchmark file (default: the file's, when
    /// the modality is the file's; else that modality's default config).
    #[serde(default)]
    pub config: Option<PathBuf>,
}

impl BenchFile {
    /// Reads and checks a benchmark file.
    ///
    /// # Errors
    /// Unreadable file, TOML errors (naming the key), no settings, no seeds, or duplicate
    /// setting names.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--config {}", path.display()))?;
        let bench: BenchFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "--config {}: {}",
                path.display(),
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })?;
        let settings = bench.all_settings();
        for m in std::iter::once(&bench.modality)
            .chain(settings.iter().filter_map(|s| s.modality.as_ref()))
        {
            if !["vision", "audio", "text"].contains(&m.as_str()) {
                bail!(
                    "--config {}: modality = {m:?}: expected vision, audio or text",
                    path.display()
                );
            }
        }
        if bench.seeds.is_empty() {
            bail!("--config {}: seeds is empty", path.display());
        }
        if settings.is_empty() {
            bail!(
                "--config {}: no [[setting]] and no [grid]: nothing to run",
                path.display()
            );
        }
        let mut seen = std::collections::HashSet::new();
        for s in &settings {
            if !seen.insert(slug(&s.name)) {
                bail!(
                    "--config {}: two settings are named {:?} (names must differ)",
                    path.display(),
                    s.name
                );
            }
        }
        Ok(bench)
    }

    /// The explicit settings, then one per combination of the grid's values.
    pub fn all_settings(&self) -> Vec<Setting> {
        let mut out = self.settings.clone();
        let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (key, values) in &self.grid {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((key.clone(), v.to_string()));
                        c
                    })
                })
                .collect();
        }
        if !self.grid.is_empty() {
            for c in combos {
                out.push(Setting {
                    name: c
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    set: c.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    modality: None,
                    config: None,
                });
            }
        }
        out
    }
}

/// A folder name for a setting name.
fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.trim_matches('_').to_string()
}

/// The finished runs of one setting.
struct SettingResults {
    name: String,
    runs: Vec<(u64, serde_json::Value, PathBuf)>,
}

/// Runs the benchmark in `bench_path` into `out`.
///
/// # Errors
/// A bad benchmark file or base config, a run that fails (naming the setting and seed), or an
/// output file that cannot be written.
pub fn run(
    bench_path: &Path,
    data: Option<PathBuf>,
    out: Option<PathBuf>,
    device: Device,
) -> Result<()> {
    let bench = BenchFile::read(bench_path)?;
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(format!("bench-{}", bench.name)));
    let base = |setting: &Setting| -> Result<(String, String, String)> {
        let modality = setting
            .modality
            .clone()
            .unwrap_or_else(|| bench.modality.clone());
        let config = match (&setting.config, &setting.modality) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(m)) if *m != bench.modality => None,
            (None, _) => bench.config.clone(),
        };
        let (text, origin) = match config {
            Some(rel) => {
                let p = bench_path.parent().unwrap_or(Path::new(".")).join(rel);
                (
                    std::fs::read_to_string(&p).with_context(|| {
                        format!("--config {}: config {}", bench_path.display(), p.display())
                    })?,
                    p.display().to_string(),
                )
            }
            None => {
                let d = match modality.as_str() {
                    "vision" => VISION_DEFAULT,
                    "audio" => AUDIO_DEFAULT,
                    _ => TEXT_DEFAULT,
                };
                (d.1.to_string(), format!("{} (built-in default)", d.0))
            }
        };
        Ok((modality, text, origin))
    };
    let settings = bench.all_settings();
    // Every setting's config is checked before the first run: a typo in the last setting
    // should not surface an hour in.
    for setting in &settings {
        let (modality, text, origin) = base(setting)?;
        let mut overrides = bench.set.clone();
        overrides.extend(setting.set.iter().cloned());
        check_config(&modality, &text, &origin, &overrides)
            .with_context(|| format!("setting {:?}", setting.name))?;
    }
    if let Some(d) = &data
        && !d.exists()
    {
        bail!("--data {}: no such file or folder", d.display());
    }
    let total = settings.len() * bench.seeds.len();
    eprintln!(
        "ssl bench {}: {} settings x {} seeds = {total} runs into {}",
        bench.name,
        settings.len(),
        bench.seeds.len(),
        out.display()
    );
    let started = std::time::Instant::now();
    let mut all = Vec::new();
    let mut done = 0;
    for setting in &settings {
        let (modality, base_text, base_origin) = base(setting)?;
        let mut runs = Vec::new();
        for &seed in &bench.seeds {
            done += 1;
            let dir = out
                .join("runs")
                .join(slug(&setting.name))
                .join(format!("seed-{seed}"));
            let mut overrides = bench.set.clone();
            overrides.extend(setting.set.iter().cloned());
            overrides.push(format!("seed={seed}"));
            eprintln!(
                "[{done}/{total}] {} (seed {seed}) {}",
                setting.name,
                if dir.join("results.json").is_file() {
                    "finished earlier"
                } else {
                    "training"
                }
            );
            let results = train_one(
                &modality,
                &base_text,
                &base_origin,
                &overrides,
                data.clone(),
                &dir,
                &device,
            )
            .with_context(|| format!("setting {:?}, seed {seed}", setting.name))?;
            eprintln!(
                "    {} | elapsed {:.0} min",
                short_probes(&results),
                started.elapsed().as_secs_f64() / 60.0
            );
            runs.push((seed, results, dir));
        }
        all.push(SettingResults {
            name: setting.name.clone(),
            runs,
        });
        // After every setting, so a long benchmark shows its table while it runs.
        write_reports(&bench, &all, &out, all.len() == settings.len())?;
    }
    Ok(())
}

fn short_probes(results: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    for p in results["probes"].as_array().into_iter().flatten() {
        parts.push(format!(
            "{} {} {:.2}% (random init {:.2}%)",
            p["probe"].as_str().unwrap_or(""),
            p["labels"].as_str().unwrap_or(""),
            p["trained_top1"].as_f64().unwrap_or(f64::NAN) * 100.0,
            p["random_init_top1"].as_f64().unwrap_or(f64::NAN) * 100.0
        ));
    }
    format!(
        "{} | loss {:.3} | collapsed {}",
        parts.join(", "),
        results["final_loss"].as_f64().unwrap_or(f64::NAN),
        results["collapsed"]
    )
}

/// Loads (and validates) a setting's config without running it.
fn check_config(modality: &str, text: &str, origin: &str, overrides: &[String]) -> Result<()> {
    match modality {
        "vision" => drop(load_config::<VisionModality>(text, origin, overrides)?),
        "audio" => drop(load_config::<AudioModality>(text, origin, overrides)?),
        _ => drop(load_config::<TextModality>(text, origin, overrides)?),
    }
    Ok(())
}

fn train_one(
    modality: &str,
    text: &str,
    origin: &str,
    overrides: &[String],
    data: Option<PathBuf>,
    dir: &Path,
    device: &Device,
) -> Result<serde_json::Value> {
    fn go<M: Modality>(
        m: M,
        cfg: ExperimentConfig<M>,
        root: PathBuf,
        dir: &Path,
        device: &Device,
    ) -> Result<serde_json::Value> {
        let resume = !checkpoint::list_checkpoints(&dir.join("checkpoints")).is_empty();
        let opts = RunOptions {
            out_dir: dir.to_path_buf(),
            data_root: root,
            device: device.clone(),
            resume,
            progress: true,
            pause_at_step: None,
            random_init: true,
        };
        let report = train_and_evaluate(m, cfg, &opts)?;
        if let Err(e) =
            crate::plot::write_training_plot(&dir.join("metrics.jsonl"), &dir.join("training.svg"))
        {
            eprintln!("warning: no training plot: {}", crate::cli::one_line(&e));
        }
        Ok(report.results)
    }
    match modality {
        "vision" => {
            let cfg = load_config::<VisionModality>(text, origin, overrides)?;
            let root = resolve_vision_data(data, &cfg.data.dataset)?;
            go(VisionModality, cfg, root, dir, device)
        }
        "audio" => {
            let cfg = load_config::<AudioModality>(text, origin, overrides)?;
            let root = resolve_local_data(data, &cfg.data.dataset, false)?;
            go(AudioModality::default(), cfg, root, dir, device)
        }
        _ => {
            let cfg = load_config::<TextModality>(text, origin, overrides)?;
            let root = resolve_local_data(data, &cfg.data.dataset, true)?;
            go(TextModality::default(), cfg, root, dir, device)
        }
    }
}

/// The probe columns `(probe, labels)` in the order of the first run.
fn probe_columns(all: &[SettingResults]) -> Vec<(String, String)> {
    let mut cols = Vec::new();
    for s in all {
        for (_, r, _) in &s.runs {
            for p in r["probes"].as_array().into_iter().flatten() {
                let c = (
                    p["probe"].as_str().unwrap_or("").to_string(),
                    p["labels"].as_str().unwrap_or("").to_string(),
                );
                if !cols.contains(&c) {
                    cols.push(c);
                }
            }
        }
    }
    cols
}

fn probe_value(r: &serde_json::Value, col: &(String, String), field: &str) -> Option<f64> {
    r["probes"].as_array()?.iter().find_map(|p| {
        (p["probe"] == col.0.as_str() && p["labels"] == col.1.as_str())
            .then(|| p[field].as_f64())
            .flatten()
    })
}

/// Accuracy (%) mean and std over a setting's seeds of one probe column.
fn column_stats(s: &SettingResults, col: &(String, String), field: &str) -> Option<(f64, f64)> {
    let v: Vec<f64> = s
        .runs
        .iter()
        .filter_map(|(_, r, _)| probe_value(r, col, field).map(|x| x * 100.0))
        .collect();
    (!v.is_empty()).then(|| mean_std(&v))
}

fn write_reports(bench: &BenchFile, all: &[SettingResults], out: &Path, last: bool) -> Result<()> {
    let cols = probe_columns(all);
    // Markdown: one row per setting, mean +- std over seeds, random init in parentheses.
    let mut md = String::new();
    md.push_str(&format!("## {}\n\n", bench.name));
    if !bench.description.is_empty() {
        md.push_str(&format!("{}\n\n", bench.description.trim()));
    }
    md.push_str(&format!(
        "Top-1 accuracy (%) on the evaluation split, mean ± std over seeds {:?}; the random-init encoder's in parentheses.\n\n",
        bench.seeds
    ));
    md.push_str("| setting |");
    for c in &cols {
        md.push_str(&format!(" {} {} |", c.0, c.1));
    }
    md.push_str(" final loss | collapse std | collapsed | train s |\n|---|");
    for _ in &cols {
        md.push_str("---|");
    }
    md.push_str("---|---|---|---|\n");
    for s in all {
        md.push_str(&format!("| {} |", s.name));
        for c in &cols {
            let cell = match (
                column_stats(s, c, "trained_top1"),
                column_stats(s, c, "random_init_top1"),
            ) {
                (Some((m, sd)), Some((rm, _))) if s.runs.len() > 1 => {
                    format!("{m:.2} ± {sd:.2} ({rm:.2})")
                }
                (Some((m, _)), Some((rm, _))) => format!("{m:.2} ({rm:.2})"),
                (Some((m, _)), None) => format!("{m:.2}"),
                _ => "-".into(),
            };
            md.push_str(&format!(" {cell} |"));
        }
        let field = |k: &str| {
            mean_std(
                &s.runs
                    .iter()
                    .filter_map(|(_, r, _)| r[k].as_f64())
                    .collect::<Vec<_>>(),
            )
            .0
        };
        let collapsed = s
            .runs
            .iter()
            .filter(|(_, r, _)| r["collapsed"].as_bool() == Some(true))
            .count();
        md.push_str(&format!(
            " {:.4} | {:.4} | {}/{} | {:.0} |\n",
            field("final_loss"),
            field("final_collapse_std"),
            collapsed,
            s.runs.len(),
            field("train_seconds")
        ));
    }
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    ssl_framework::fsutil::write_atomic(&out.join("table.md"), md.as_bytes())
        .with_context(|| out.join("table.md").display().to_string())?;

    // CSV: one row per run.
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["setting".to_string(), "seed".to_string()];
    for c in &cols {
        header.push(format!("{} {} trained", c.0, c.1));
        header.push(format!("{} {} random-init", c.0, c.1));
    }
    header.extend(
        [
            "final_loss",
            "final_collapse_std",
            "collapsed",
            "train_seconds",
            "run",
        ]
        .map(String::from),
    );
    w.write_record(&header)?;
    for s in all {
        for (seed, r, dir) in &s.runs {
            let mut row = vec![s.name.clone(), seed.to_string()];
            for c in &cols {
                for f in ["trained_top1", "random_init_top1"] {
                    row.push(
                        probe_value(r, c, f)
                            .map(|v| format!("{:.4}", v * 100.0))
                            .unwrap_or_default(),
                    );
                }
            }
            row.push(r["final_loss"].to_string());
            row.push(r["final_collapse_std"].to_string());
            row.push(r["collapsed"].to_string());
            row.push(r["train_seconds"].to_string());
            row.push(dir.display().to_string());
            w.write_record(&row)?;
        }
    }
    let csv_bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    ssl_framework::fsutil::write_atomic(&out.join("table.csv"), &csv_bytes)
        .with_context(|| out.join("table.csv").display().to_string())?;

    accuracy_plot(all, &cols, &out.join("accuracy.svg"))?;
    curves_plot(all, &out.join("curves.svg"))?;
    if !last {
        return Ok(());
    }
    print!("{md}");
    println!(
        "\ntable: {} (and table.csv); plots: accuracy.svg, curves.svg",
        out.join("table.md").display()
    );
    Ok(())
}

/// Distinguishable line colours (Okabe-Ito, then a few more).
const PALETTE: [RGBColor; 10] = [
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

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

/// One panel per probe column: the trained encoder's accuracy per setting (bar, std whisker),
/// the random-init encoder's as a red tick.
fn accuracy_plot(all: &[SettingResults], cols: &[(String, String)], path: &Path) -> Result<()> {
    let mut svg = String::new();
    {
        let h = 140 + 34 * all.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (560 * cols.len().max(1) as u32, h))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        for (area, col) in root.split_evenly((1, cols.len().max(1))).iter().zip(cols) {
            let n = all.len();
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{} {} top-1 (%)", col.0, col.1), ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(190)
                .build_cartesian_2d(0f64..100f64, 0f64..n as f64)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .y_labels(n * 2 + 1)
                .y_label_formatter(&|y| {
                    let i = (*y - 0.5).round();
                    if (y - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                        all[n - 1 - i as usize].name.clone()
                    } else {
                        String::new()
                    }
                })
                .disable_y_mesh()
                .x_desc("blue: trained encoder (mean, black: ± std over seeds); red: random init")
                .draw()
                .map_err(plot_err)?;
            for (i, s) in all.iter().enumerate() {
                let y = (n - 1 - i) as f64;
                if let Some((m, sd)) = column_stats(s, col, "trained_top1") {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(0.0, y + 0.2), (m, y + 0.8)],
                            BLUE.mix(0.6).filled(),
                        )))
                        .map_err(plot_err)?;
                    if sd > 0.0 {
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                vec![(m - sd, y + 0.5), (m + sd, y + 0.5)],
                                BLACK,
                            )))
                            .map_err(plot_err)?;
                    }
                }
                if let Some((rm, _)) = column_stats(s, col, "random_init_top1") {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(rm, y + 0.1), (rm, y + 0.9)],
                            RED.stroke_width(3),
                        )))
                        .map_err(plot_err)?;
                }
            }
        }
        root.present().map_err(plot_err)?;
    }
    ssl_framework::fsutil::write_atomic(path, svg.as_bytes())
        .with_context(|| path.display().to_string())
}

/// BYOL loss and the collapse metric against the step, one line per setting (first seed).
fn curves_plot(all: &[SettingResults], path: &Path) -> Result<()> {
    let series: Vec<(String, Vec<ssl_framework::train::MetricsRecord>)> = all
        .iter()
        .filter_map(|s| {
            let (_, _, dir) = s.runs.first()?;
            Some((
                s.name.clone(),
                read_metrics(&dir.join("metrics.jsonl")).ok()?,
            ))
        })
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        type Field = fn(&ssl_framework::train::MetricsRecord) -> f64;
        let panels: [(&str, Field); 2] = [
            ("BYOL loss", |r| r.loss),
            ("collapse metric (std of normalized projections)", |r| {
                r.collapse_std
            }),
        ];
        for (area, (title, field)) in root.split_evenly((1, 2)).iter().zip(panels) {
            let pts: Vec<Vec<(f64, f64)>> = series
                .iter()
                .map(|(_, recs)| {
                    recs.iter()
                        .map(|r| (r.step as f64, field(r)))
                        .filter(|p| p.1.is_finite())
                        .collect()
                })
                .collect();
            let x1 = pts.iter().flatten().map(|p| p.0).fold(1.0, f64::max);
            let lo = pts
                .iter()
                .flatten()
                .map(|p| p.1)
                .fold(f64::INFINITY, f64::min);
            let hi = pts
                .iter()
                .flatten()
                .map(|p| p.1)
                .fold(f64::NEG_INFINITY, f64::max);
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.05).max(1e-9);
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..x1, (lo - pad)..(hi + pad))
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("optimizer step")
                .draw()
                .map_err(plot_err)?;
            for (i, ((name, _), p)) in series.iter().zip(pts).enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(p, color.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    ssl_framework::fsutil::write_atomic(path, svg.as_bytes())
        .with_context(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(text: &str) -> BenchFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn settings_are_the_explicit_ones_then_the_grid_product() {
        let b = bench(
            r#"
name = "t"
modality = "vision"
[[setting]]
name = "default"
[grid]
"byol.tau_base" = [0.0, 0.99]
"train.batch_size" = [64, 128]
"#,
        );
        let s = b.all_settings();
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "default",
                "byol.tau_base=0.0, train.batch_size=64",
                "byol.tau_base=0.0, train.batch_size=128",
                "byol.tau_base=0.99, train.batch_size=64",
                "byol.tau_base=0.99, train.batch_size=128",
            ]
        );
        assert_eq!(s[4].set, ["byol.tau_base=0.99", "train.batch_size=128"]);
        assert_eq!(b.seeds, [0]);
    }

    #[test]
    fn a_setting_may_name_its_own_modality_and_config() {
        let b = bench(
            r#"
name = "t"
modality = "vision"
[[setting]]
name = "vision"
[[setting]]
name = "audio"
modality = "audio"
set = ["train.epochs=1"]
"#,
        );
        let s = b.all_settings();
        assert_eq!(s[1].modality.as_deref(), Some("audio"));
        assert_eq!(s[0].modality, None);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.toml");
        std::fs::write(
            &p,
            "name = \"x\"\nmodality = \"vision\"\n[[setting]]\nname = \"a\"\nmodality = \"smell\"",
        )
        .unwrap();
        let e = BenchFile::read(&p).unwrap_err().to_string();
        assert!(e.contains("smell"), "{e}");
    }

    #[test]
    fn slugs_and_statistics() {
        assert_eq!(slug("tau = 0.99 (default)"), "tau___0.99__default");
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.toml");
        for (text, needle) in [
            (
                "name = \"x\"\nmodality = \"smell\"\n[[setting]]\nname = \"a\"",
                "smell",
            ),
            ("name = \"x\"\nmodality = \"vision\"", "nothing to run"),
            (
                "name = \"x\"\nmodality = \"vision\"\n[[setting]]\nname = \"a\"\n[[setting]]\nname = \"a\"",
                "two settings",
            ),
            ("name = \"x\"\nmodality = \"vision\"\nsteps = 3", "steps"),
            (
                "name = \"x\"\nmodality = \"vision\"\nseeds = []\n[[setting]]\nname = \"a\"",
                "seeds",
            ),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = BenchFile::read(&p).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("b.toml"), "{e}");
        }
    }
}
