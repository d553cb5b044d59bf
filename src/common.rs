//! What several commands share: config reading, one-line errors.

use anyhow::{Context, Result};
use ssl_framework::config::{ExperimentConfig, load_config};
use ssl_framework::modality::Modality;
use std::path::Path;

/// Formats an error chain on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() {
            continue;
        }
        // A cause that its context already quotes (`path: error` over `error`) is said once.
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    ssl_framework::data::one_line(&parts.join(": "))
}

/// Writes `line` and a newline to stderr in one write, so that under MPI another process's
/// output cannot land inside it (`eprintln!` writes its pieces one by one).
pub fn say_line(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// Reads the config: `--config FILE` or the modality's built-in `default` `(path, text)`,
/// then overrides.
///
/// # Errors
/// An unreadable file, or the config's errors (naming the key).
pub fn read_config<M: Modality>(
    config: Option<&Path>,
    default: (&str, &str),
    overrides: &[String],
) -> Result<ExperimentConfig<M>> {
    let (text, origin) = match config {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("--config {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            default.1.to_string(),
            format!("{} (built-in default)", default.0),
        ),
    };
    Ok(load_config::<M>(&text, &origin, overrides)?)
}
