//! What several commands share: devices, config reading, one-line errors.

#[cfg(feature = "cuda")]
use anyhow::anyhow;
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
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

/// Parses `cpu`, `cuda:N` or `cuda:local` (under MPI, the GPU whose index is the rank's rank on
/// its machine; 0 outside MPI) into a device.
///
/// # Errors
/// Another name, or a backend this binary was built without.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" | "flex" => cpu_device(),
        s if s.starts_with("cuda") => cuda_device(s),
        other => bail!("--device {other}: expected `cpu` or `cuda:N`"),
    }
}

/// The CPU device.
///
/// # Errors
/// `SSL_CPU_PATH` names no path or one this CPU lacks ([`ssl_kernels::cpu_path::requested`]).
#[cfg(feature = "flex")]
pub fn cpu_device() -> Result<Device> {
    // A `SSL_CPU_PATH` the kernels cannot take is refused here, before any of them runs.
    ssl_kernels::cpu_path::requested()?;
    Ok(Device::flex())
}

/// The CPU device.
///
/// # Errors
/// This binary was built without the `flex` feature.
#[cfg(not(feature = "flex"))]
pub fn cpu_device() -> Result<Device> {
    bail!("--device cpu: this binary was built without the `flex` feature")
}

#[cfg(feature = "cuda")]
fn cuda_device(s: &str) -> Result<Device> {
    let index = s.strip_prefix("cuda:").unwrap_or("0");
    let index: usize = if index == "local" {
        crate::ranks::local_rank()
    } else {
        index.parse().map_err(|_| {
            anyhow!("--device {s}: expected cuda:N with N a GPU index, or cuda:local under MPI")
        })?
    };
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(s: &str) -> Result<Device> {
    bail!(
        "--device {s}: this binary was built without the `cuda` feature (cargo build --release --features cuda)"
    )
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
