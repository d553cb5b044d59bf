//! `ssl bench --config configs/bench/<name>.toml`: a config-driven benchmark. Runs every
//! setting of a grid (explicit settings and/or the cartesian product of a few keys' values)
//! for every seed with `ssl train`'s machinery, one after another, resumable (a finished run
//! is read back, an interrupted one resumes from its newest checkpoint), then writes a table
//! (Markdown and CSV: each probe's accuracy mean and std over seeds, beside random init), and
//! plots (accuracy per setting; loss and collapse curves).

use crate::common::one_line;
use crate::modalities::{self, BuiltIn, Visitor};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde::Deserialize;
use ssl_framework::checkpoint;
use ssl_framework::config::load_config;
use ssl_framework::modality::Modality;
use ssl_framework::train::metrics::read_metrics;
use ssl_framework::train::{RunOptions, train_and_evaluate};
use ssl_search::plot::{Bar, accuracy_bars, runs_curves};
use ssl_search::stats::mean_std;
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
            if modalities::find(m).is_none() {
                bail!(
                    "--config {}: modality = {m:?}: expected {}",
                    path.display(),
                    modalities::names_or()
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
    let base = |setting: &Setting| -> Result<(&'static BuiltIn, String, String)> {
        let name = setting.modality.as_ref().unwrap_or(&bench.modality);
        let modality = modalities::find(name).expect("BenchFile::read checked the names");
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
                let d = modality.default_config;
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
        modality
            .visit(SettingRun {
                text: &text,
                origin: &origin,
                overrides: &overrides,
                run: None,
            })
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
            let results = modality
                .visit(SettingRun {
                    text: &base_text,
                    origin: &base_origin,
                    overrides: &overrides,
                    run: Some((data.clone(), &dir, &device)),
                })
                .with_context(|| format!("setting {:?}, seed {seed}", setting.name))?
                .expect("a run returns its results");
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

/// Loads (and so checks) a setting's config and, with `run` (the data, the run folder and the
/// device), trains it (resuming from the run's newest checkpoint) and returns its results.
struct SettingRun<'a> {
    text: &'a str,
    origin: &'a str,
    overrides: &'a [String],
    run: Option<(Option<PathBuf>, &'a Path, &'a Device)>,
}

impl Visitor for SettingRun<'_> {
    type Out = Result<Option<serde_json::Value>>;
    fn visit<M: Modality>(self, entry: &'static BuiltIn, new: fn() -> M) -> Self::Out {
        let cfg = load_config::<M>(self.text, self.origin, self.overrides)?;
        let Some((data, dir, device)) = self.run else {
            return Ok(None);
        };
        let root = (entry.locate_data)(data, &modalities::dataset(&cfg))?;
        let resume = !checkpoint::list_checkpoints(&dir.join("checkpoints")).is_empty();
        let opts = RunOptions {
            out_dir: dir.to_path_buf(),
            data_root: root,
            device: device.clone(),
            resume,
            progress: true,
            pause_at_step: None,
            random_init: true,
            stop: crate::signals::stop_request(),
            replicas: Default::default(),
        };
        let report = train_and_evaluate(new(), cfg, &opts)?;
        if let Err(e) =
            ssl_search::plot::training_curves(&dir.join("metrics.jsonl"), &dir.join("training.svg"))
        {
            eprintln!("warning: no training plot: {}", one_line(&e.into()));
        }
        Ok(Some(report.results))
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

    // Accuracy per setting, one panel per probe column; loss and collapse curves (first seed).
    let names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    let panels: Vec<(String, Vec<Bar>)> = cols
        .iter()
        .map(|col| {
            let bars = all
                .iter()
                .map(|s| Bar {
                    trained: column_stats(s, col, "trained_top1"),
                    random_init: column_stats(s, col, "random_init_top1").map(|r| r.0),
                })
                .collect();
            (format!("{} {} top-1 (%)", col.0, col.1), bars)
        })
        .collect();
    accuracy_bars(&names, &panels, &out.join("accuracy.svg"))?;
    let curves: Vec<(String, Vec<ssl_framework::train::MetricsRecord>)> = all
        .iter()
        .filter_map(|s| {
            let (_, _, dir) = s.runs.first()?;
            Some((
                s.name.clone(),
                read_metrics(&dir.join("metrics.jsonl")).ok()?,
            ))
        })
        .collect();
    runs_curves(&curves, &out.join("curves.svg"))?;
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
    fn slugs() {
        assert_eq!(slug("tau = 0.99 (default)"), "tau___0.99__default");
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
