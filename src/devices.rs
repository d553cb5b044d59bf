//! The `--device` names: which backends this binary was built with, and opening one device.
//!
//! | name | backend | cargo feature |
//! |---|---|---|
//! | `cpu` (`flex`) | burn-flex with our kernels | `flex` (default) |
//! | `vulkan`, `vulkan:N`, `vulkan:cpu`, `vulkan:local` | wgpu on the Vulkan API | `wgpu` (WGSL shaders) or `vulkan` (SPIR-V) |
//! | `wgpu`, `wgpu:N`, `wgpu:cpu`, `wgpu:local` | wgpu on the API it settles on | `wgpu`, `vulkan` or `metal` |
//! | `metal` | wgpu on the Metal API | `metal` (MSL shaders) or `wgpu` |
//! | `cuda`, `cuda:N`, `cuda:local` | burn-cuda | `cuda` |
//! | `rocm`, `rocm:N`, `rocm:local` | burn-rocm (HIP) | `rocm` |
//!
//! The shader language is the build's: the `vulkan` feature compiles kernels to SPIR-V
//! directly (burn's fast path on GPU drivers), the `wgpu` feature to WGSL, which wgpu
//! translates (the path that runs on Mesa's software driver lavapipe 22.3, on which the SPIR-V
//! kernels crash the driver's compiler).
//!
//! For the wgpu devices `N` is the index of a discrete GPU among the machine's discrete GPUs,
//! `cpu` a CPU adapter (a software driver such as Mesa's lavapipe), and no suffix the adapter
//! wgpu prefers (a high-power GPU first; `CUBECL_WGPU_DEFAULT_DEVICE` overrides it). `local`
//! is the GPU whose index is the process's rank on its machine under MPI (0 outside MPI).
//!
//! A wgpu device is opened here, once per process and name, so that a missing driver or
//! adapter is an error at the command line rather than a panic at the first tensor.

use anyhow::{Result, bail};
use burn::tensor::Device;

/// The device names this binary accepts, for error messages: `cpu, vulkan[:N|:cpu|:local]`.
pub fn compiled_devices() -> String {
    let mut names: Vec<&str> = Vec::new();
    if cfg!(feature = "flex") {
        names.push("cpu");
    }
    if cfg!(any(feature = "wgpu", feature = "vulkan", feature = "metal")) {
        names.push("vulkan[:N|:cpu|:local]");
        names.push("wgpu[:N|:cpu|:local]");
        names.push("metal");
    }
    if cfg!(feature = "cuda") {
        names.push("cuda[:N|:local]");
    }
    if cfg!(feature = "rocm") {
        names.push("rocm[:N|:local]");
    }
    names.join(", ")
}

/// Parses a `--device` name (the module's table) and opens the device.
///
/// # Errors
/// One line naming the device: an unknown name or index; a backend this binary was built
/// without (with the cargo feature that adds it and the devices it has); a wgpu device whose
/// driver or adapter is missing (with wgpu's reason); `SSL_CPU_PATH` naming a path this CPU
/// lacks, for `cpu`. A CUDA or ROCm device is not opened here: a missing GPU or driver shows
/// at its first tensor.
pub fn parse_device(name: &str) -> Result<Device> {
    parse_device_flag("--device", name)
}

/// [`parse_device`] for a device named in the option `flag` (`--devices` of `ssl
/// search-augment`), which its errors name.
///
/// # Errors
/// As [`parse_device`].
pub fn parse_device_flag(flag: &str, name: &str) -> Result<Device> {
    parse(name).map_err(|e| anyhow::anyhow!("{flag} {name}: {e}"))
}

fn parse(name: &str) -> Result<Device> {
    let (backend, index) = match name.split_once(':') {
        Some((b, i)) => (b, Some(i)),
        None => (name, None),
    };
    match backend {
        "cpu" | "flex" if index.is_none() => cpu_device(),
        "vulkan" | "wgpu" | "metal" => wgpu_device(name, backend, index),
        "cuda" | "rocm" => gpu_index(name, index).and_then(|i| cubecl_device(backend, i)),
        _ => bail!("unknown device; this binary has: {}", compiled_devices()),
    }
}

/// A GPU index: `N`, `local` (the rank on this machine), or none (0).
fn gpu_index(name: &str, index: Option<&str>) -> Result<usize> {
    match index {
        None => Ok(0),
        Some("local") => Ok(crate::ranks::local_rank()),
        Some(i) => i.parse().map_err(|_| {
            let cpu = if name.starts_with("cuda") || name.starts_with("rocm") {
                ""
            } else {
                ", `cpu` for a CPU adapter"
            };
            anyhow::anyhow!("`{i}` is not a GPU index (a number, or `local` under MPI{cpu})")
        }),
    }
}

/// The error for a backend this binary was built without.
fn not_built(feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "this binary was built without the `{feature}` feature (cargo build --release --features {feature}); it has: {}",
        compiled_devices()
    )
}

#[cfg(feature = "flex")]
fn cpu_device() -> Result<Device> {
    // A `SSL_CPU_PATH` the kernels cannot take is refused here, before any of them runs.
    ssl_kernels::cpu_path::requested()?;
    Ok(Device::flex())
}

#[cfg(not(feature = "flex"))]
fn cpu_device() -> Result<Device> {
    Err(not_built("flex"))
}

#[allow(unused_variables)]
fn cubecl_device(backend: &str, index: usize) -> Result<Device> {
    match backend {
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(index)),
        #[cfg(feature = "rocm")]
        "rocm" => Ok(Device::rocm(index)),
        other => Err(not_built(other)),
    }
}

#[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "metal")))]
fn wgpu_device(_name: &str, _backend: &str, _index: Option<&str>) -> Result<Device> {
    Err(anyhow::anyhow!(
        "this binary was built without wgpu: cargo build --release --features wgpu (WGSL: any Vulkan driver, Mesa's software one included, and Metal), or --features vulkan (SPIR-V, for GPU drivers) or metal; it has: {}",
        compiled_devices()
    ))
}

/// Opens a wgpu device once per process and name (wgpu refuses to open one twice).
#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "metal"))]
fn wgpu_device(name: &str, backend: &str, index: Option<&str>) -> Result<Device> {
    use burn::tensor::DeviceKind;
    use burn::tensor::wgpu::WgpuBackend;
    use std::sync::Mutex;

    static OPENED: Mutex<Vec<(String, Device)>> = Mutex::new(Vec::new());

    let api = match backend {
        "vulkan" => WgpuBackend::Vulkan,
        "metal" => WgpuBackend::Metal,
        _ => WgpuBackend::Auto,
    };
    let kind = match index {
        None => DeviceKind::DefaultDevice,
        Some("cpu") => DeviceKind::Cpu,
        Some(_) => DeviceKind::DiscreteGpu(gpu_index(name, index)?),
    };
    // One key per adapter and API, whatever the spelling (`vulkan:local` is `vulkan:0` alone).
    let key = format!("{api:?} {kind:?}");
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, device)) = opened.iter().find(|(k, _)| *k == key) {
        return Ok(device.clone());
    }
    let device = Device::wgpu_options()
        .device_kind(kind)
        .graphics_api(api)
        .init()
        .map_err(|e| {
            let hint = match api {
                WgpuBackend::Metal => "Metal needs an Apple GPU",
                _ => "Vulkan needs a driver: your GPU vendor's, or Mesa's `mesa-vulkan-drivers` and `libvulkan1`; `vulkaninfo --summary` lists the adapters",
            };
            anyhow::anyhow!("cannot open it: {e} ({hint})")
        })?;
    opened.push((key, device.clone()));
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_and_indices_are_one_line_naming_the_device() {
        let e = parse_device("tpu").unwrap_err().to_string();
        assert!(e.starts_with("--device tpu: unknown device"), "{e}");
        assert!(e.contains(&compiled_devices()), "{e}");
        let e = parse_device("cpu:1").unwrap_err().to_string();
        assert!(e.starts_with("--device cpu:1: unknown device"), "{e}");
        let e = parse_device("cuda:x").unwrap_err().to_string();
        assert!(e.contains("`x` is not a GPU index"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn a_backend_left_out_of_the_build_names_its_feature() {
        let wgpu = cfg!(any(feature = "wgpu", feature = "vulkan", feature = "metal"));
        let no_wgpu = "without wgpu: cargo build --release --features wgpu";
        for (name, needle, built) in [
            (
                "cuda:0",
                "without the `cuda` feature",
                cfg!(feature = "cuda"),
            ),
            ("rocm", "without the `rocm` feature", cfg!(feature = "rocm")),
            ("metal", no_wgpu, wgpu),
            ("vulkan", no_wgpu, wgpu),
            ("wgpu:1", no_wgpu, wgpu),
        ] {
            if built {
                continue;
            }
            let e = parse_device(name).unwrap_err().to_string();
            assert!(e.contains(needle), "{name}: {e}");
            assert!(e.contains("it has: "), "{name}: {e}");
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn cpu_is_the_flex_device() {
        let d = parse_device("cpu").unwrap();
        assert!(ssl_kernels::is_flex(&d));
        assert!(ssl_kernels::is_flex(&parse_device("flex").unwrap()));
    }
}
