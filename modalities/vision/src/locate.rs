//! Where an image dataset is: as [`ssl_framework::data::locate`] finds any dataset, but a
//! folder counts only when it holds images in a known layout, and CIFAR-10 is downloaded into
//! the cache when it is nowhere to be found.

use crate::download::{CIFAR10_MD5, CIFAR10_URL, download_and_extract};
use crate::readers::detect;
use ssl_framework::data::locate::{LocateError, cache_dir, candidates, explicit_data};
use std::path::PathBuf;

/// Finds the data folder of an image dataset: `explicit` (a folder, or a `.tar.gz` unpacked
/// into the cache), then `$SSL_DATA_DIR/<dataset>` or `$SSL_DATA_DIR`, then the cache, each
/// only when [`detect`] recognizes it; downloads CIFAR-10 (from `$SSL_CIFAR10_URL` when set)
/// into the cache when `dataset` is `cifar10` and nothing is found.
///
/// # Errors
/// [`LocateError::NotFound`] for another dataset found nowhere; the errors of
/// [`explicit_data`]; [`LocateError::Other`] holding the
/// [`DownloadError`](crate::download::DownloadError) of a failed download.
pub fn locate_data(explicit: Option<PathBuf>, dataset: &str) -> Result<PathBuf, LocateError> {
    if let Some(d) = explicit {
        return explicit_data(d);
    }
    if let Some(found) = candidates(dataset).into_iter().find(|c| detect(c).is_ok()) {
        return Ok(found);
    }
    let cached = cache_dir().join(dataset);
    if dataset != "cifar10" {
        return Err(LocateError::NotFound(format!(
            "no data for dataset `{dataset}`: pass --data DIR (or set SSL_DATA_DIR)"
        )));
    }
    let url = std::env::var("SSL_CIFAR10_URL").unwrap_or_else(|_| CIFAR10_URL.to_string());
    eprintln!(
        "CIFAR-10 not found (no --data, SSL_DATA_DIR, or {}); downloading it there",
        cached.display()
    );
    download_and_extract(&url, CIFAR10_MD5, &cached, true)
        .map_err(|e| LocateError::Other(Box::new(e)))?;
    Ok(cached)
}
