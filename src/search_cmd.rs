//! `ssl search-augment --modality M`: automatic search of augmentation policies (crate
//! `ssl-search`), with the search file `configs/search/<modality>.toml` (built in) or
//! `--config FILE`.

use crate::devices::parse_device_flag;
use crate::modalities::{self, BuiltIn, Visitor};
use anyhow::{Context, Result, bail};
use ssl_framework::Modality;
use ssl_framework::config::load_config;
use ssl_search::modality_study::{StudyOptions, search};
use ssl_search::settings::SearchSettings;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// `ssl search-augment`'s arguments.
#[derive(clap::Args)]
pub struct SearchArgs {
    /// The kind of data: vision, audio or text.
    #[arg(long, value_parser = modalities::parser())]
    modality: &'static BuiltIn,
    /// Search file (TOML; see configs/search/); default: the modality's built-in one.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Dataset folder or .tar.gz archive (as `ssl train --data`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Searched policies to try (the three baselines come on top).
    #[arg(long)]
    trials: Option<usize>,
    /// Budget of the search phase, e.g. `20m`, `1h30m`, `900s` (a bare number is minutes; 0:
    /// no limit): no trial starts after it. The final re-training runs after it, unlimited.
    #[arg(long)]
    budget: Option<String>,
    /// Sampler: `tpe` (tree-structured Parzen estimator) or `random`.
    #[arg(long, value_parser = ["tpe", "random"])]
    sampler: Option<String>,
    /// Output folder (journal, report, plots, best-policy.toml, trial runs); default
    /// `runs/search-<name>`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the study in --out after an interruption (same search file and options).
    #[arg(long)]
    resume: bool,
    /// Devices, comma-separated: `cpu`, or GPUs such as `cuda:0,cuda:1` or `vulkan:0,vulkan:1` (one trial per device at once; README, "Devices").
    #[arg(long, default_value = "cpu")]
    devices: String,
    /// No per-run progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// Parses a duration: `90s`, `20m`, `1h`, `1h30m`, or a bare number of minutes.
///
/// # Errors
/// A message naming the value when it is not a duration.
pub fn parse_minutes(s: &str) -> Result<f64> {
    let t = s.trim();
    if let Ok(m) = t.parse::<f64>() {
        if m.is_finite() && m >= 0.0 {
            return Ok(m);
        }
        bail!("--budget {s}: expected a duration such as 20m, 1h30m or 900s");
    }
    let mut total = 0.0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let v: f64 = num.parse().map_err(|_| {
            anyhow::anyhow!("--budget {s}: expected a duration such as 20m, 1h30m or 900s")
        })?;
        total += match c {
            'h' => v * 60.0,
            'm' => v,
            's' => v / 60.0,
            _ => bail!("--budget {s}: unknown unit {c:?} (use h, m or s)"),
        };
        num.clear();
    }
    if !num.is_empty() {
        bail!("--budget {s}: a number without a unit at the end (use h, m or s)");
    }
    Ok(total)
}

/// Runs `ssl search-augment`.
///
/// # Errors
/// Bad arguments or search file (naming the key), data that cannot be found, or a study error.
pub fn run(a: SearchArgs) -> Result<()> {
    let (text, origin, dir) = match &a.config {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("--config {}", p.display()))?,
            p.display().to_string(),
            Some(p.parent().unwrap_or(Path::new(".")).to_path_buf()),
        ),
        None => {
            let d = a.modality.search_file;
            (d.1.to_string(), format!("{} (built-in default)", d.0), None)
        }
    };
    let mut settings = SearchSettings::parse(&text, &origin)?;
    if settings.modality != a.modality.name {
        bail!(
            "{origin}: modality = {:?}, but --modality {}",
            settings.modality,
            a.modality.name
        );
    }
    if let Some(t) = a.trials {
        settings.trials = t;
    }
    if let Some(b) = &a.budget {
        settings.budget_minutes = parse_minutes(b)?;
    }
    if let Some(s) = &a.sampler {
        settings.sampler = s
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--sampler {e}"))?;
    }
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    let (base_text, base_origin) = match (&settings.base, &dir) {
        (Some(rel), Some(dir)) => {
            let p = dir.join(rel);
            (
                std::fs::read_to_string(&p)
                    .with_context(|| format!("{origin}: base = {}", p.display()))?,
                p.display().to_string(),
            )
        }
        (Some(rel), None) => bail!(
            "{origin}: base = {} cannot be resolved for a built-in search file",
            rel.display()
        ),
        (None, _) => {
            let d = a.modality.default_config;
            (d.1.to_string(), format!("{} (built-in default)", d.0))
        }
    };
    let names: Vec<&str> = a.devices.split(',').map(str::trim).collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            bail!(
                "--devices {}: {n} is given twice (trials on one device run one after another; there is one CPU device)",
                a.devices
            );
        }
    }
    let devices = names
        .iter()
        .map(|d| parse_device_flag("--devices", d))
        .collect::<Result<Vec<_>>>()?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("search-{}", settings.name)));
    let progress = !a.no_progress && std::io::stderr().is_terminal();
    let study = Study {
        settings: &settings,
        base_text: &base_text,
        base_origin: &base_origin,
        data: a.data.clone(),
        out: out.clone(),
        devices,
        resume: a.resume,
        progress,
    };
    let Some(summary) = a.modality.visit(study)? else {
        // A worker rank of a study spread over MPI ranks: rank 0 reports.
        return Ok(());
    };
    if let Some((name, _, score)) = &summary.best {
        println!(
            "best searched policy: {name} ({:.2}% on the validation split): {}",
            score * 100.0,
            out.join("best-policy.toml").display()
        );
    }
    for (policy, mean) in &summary.finals {
        println!(
            "final {policy}: {:.2}% test (mean over seeds)",
            mean * 100.0
        );
    }
    println!("report: {}", out.join("report.md").display());
    println!("journal: {}", summary.journal.display());
    Ok(())
}

/// A study of one modality.
struct Study<'a> {
    settings: &'a SearchSettings,
    base_text: &'a str,
    base_origin: &'a str,
    data: Option<PathBuf>,
    out: PathBuf,
    devices: Vec<ssl_framework::burn::tensor::Device>,
    resume: bool,
    progress: bool,
}

impl Visitor for Study<'_> {
    /// The study's summary; `None` on a worker rank of a study spread over MPI ranks.
    type Out = Result<Option<ssl_search::study::StudySummary>>;
    fn visit<M: Modality>(self, entry: &'static BuiltIn, make: fn() -> M) -> Self::Out {
        ssl_search::modality_study::check(
            &make(),
            self.base_text,
            self.base_origin,
            self.settings,
        )?;
        let base = load_config::<M>(self.base_text, self.base_origin, &self.settings.set)?;
        let (ranks, finish_mpi) = crate::ranks::study_ranks(crate::signals::stop_request())?;
        let worker = ranks.as_ref().is_some_and(|r| r.0.rank() > 0);
        // Under MPI rank 0 finds (downloads, unpacks) the data first and then tells the others,
        // which find it in the cache instead of writing the same files at once.
        if let Some(r) = ranks.as_ref().filter(|_| worker) {
            r.0.receive(0).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let data_root = (entry.locate_data)(self.data, &modalities::dataset(&base))?;
        if let Some(r) = ranks.as_ref().filter(|_| !worker) {
            for to in 1..r.0.ranks() {
                r.0.send(to, b"data ready".to_vec())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        if !worker {
            eprintln!(
                "ssl search-augment: {} on {}, {} trials ({} sampler), output {}",
                self.settings.name,
                data_root.display(),
                self.settings.trials,
                serde_json::to_value(self.settings.sampler)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                self.out.display()
            );
        }
        if let Some(r) = &ranks
            && !worker
        {
            eprintln!(
                "MPI: rank 0 runs the study, ranks 1 to {} run its trials on their first device (each trial's folder must be on a filesystem every rank sees)",
                r.0.ranks() - 1
            );
        }
        let opts = StudyOptions {
            out: self.out,
            data_root,
            devices: self.devices,
            resume: self.resume,
            progress: self.progress && !worker,
            stop: crate::signals::stop_request(),
            ranks,
        };
        crate::signals::install()?;
        if worker {
            ssl_search::modality_study::serve_trials(
                make,
                self.base_text,
                self.base_origin,
                self.settings,
                &opts,
            )?;
            finish_mpi.now();
            return Ok(None);
        }
        // On an error rank 0 ends without waiting for the workers: mpirun then ends them.
        let summary = search(make, self.base_text, self.base_origin, self.settings, &opts)?;
        finish_mpi.now();
        Ok(Some(summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_minutes("20").unwrap(), 20.0);
        assert_eq!(parse_minutes("20m").unwrap(), 20.0);
        assert_eq!(parse_minutes("1h30m").unwrap(), 90.0);
        assert_eq!(parse_minutes("90s").unwrap(), 1.5);
        assert!(parse_minutes("20x").is_err());
        assert!(parse_minutes("1h30").is_err());
        assert!(parse_minutes("-5").is_err());
        assert!(parse_minutes("abc").is_err());
    }

    #[test]
    fn built_in_search_files_parse_and_match_their_modality() {
        for m in modalities::BUILT_IN {
            let (origin, text) = m.search_file;
            let s = SearchSettings::parse(text, origin).unwrap();
            assert_eq!(s.modality, m.name);
            assert!(
                s.base.is_none(),
                "{origin}: built-in files use the default config"
            );
            assert!(s.final_runs.seeds.len() >= 3);
        }
    }
}
