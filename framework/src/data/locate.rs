//! Where a dataset's files are: a folder named by the user (or a `.tar.gz` archive, unpacked
//! once into the cache), then `$SSL_DATA_DIR/<dataset>` or `$SSL_DATA_DIR`, then the cache
//! folder (`$XDG_CACHE_HOME/ssl/<dataset>` or `~/.cache/ssl/<dataset>`).
//!
//! Messages name a folder the user gave as `--data PATH`, the flag `ssl` takes it from.

use std::path::{Path, PathBuf};

/// Why no data folder was found.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// Nothing usable: the message says where it looked and what to pass instead.
    #[error("{0}")]
    NotFound(String),
    /// A file operation failed; `context` names the path.
    #[error("{context}: {source}")]
    Io {
        /// The path (`--data PATH` for the one the user gave), and what was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A modality's own way of getting its data failed (e.g. a download).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// The cache folder of downloaded and unpacked datasets: `$XDG_CACHE_HOME/ssl` or
/// `~/.cache/ssl` (`.cache/ssl` when neither variable is set).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("ssl")
}

/// Where a dataset is looked for when the user names none, in order: `$SSL_DATA_DIR/<dataset>`
/// and `$SSL_DATA_DIR` (when that variable is set), then `<cache>/<dataset>`.
pub fn candidates(dataset: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(env) = std::env::var_os("SSL_DATA_DIR").map(PathBuf::from) {
        out.extend([env.join(dataset), env]);
    }
    out.push(cache_dir().join(dataset));
    out
}

/// Finds the data of a dataset that cannot be downloaded: `explicit` (a folder, a `.tar.gz`
/// unpacked into the cache, or, with `allow_file`, any other file, returned as is), else the
/// first folder of [`candidates`].
///
/// # Errors
/// [`LocateError::NotFound`] listing the places looked in; the errors of [`explicit_data`].
pub fn resolve_local(
    explicit: Option<PathBuf>,
    dataset: &str,
    allow_file: bool,
) -> Result<PathBuf, LocateError> {
    if let Some(d) = explicit {
        if allow_file && d.is_file() && !is_archive(&d) {
            return Ok(d);
        }
        return explicit_data(d);
    }
    let tried = candidates(dataset);
    tried.iter().find(|p| p.is_dir()).cloned().ok_or_else(|| {
        LocateError::NotFound(format!(
            "no data for dataset `{dataset}` (looked in {}): pass --data DIR or ARCHIVE",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// A data path the user gave: a folder (returned as is), or a `.tar.gz`/`.tgz` archive,
/// unpacked into the cache once (see [`unpack_archive`]).
///
/// # Errors
/// [`LocateError::NotFound`] when `d` does not exist or is a file that is not an archive;
/// [`LocateError::Io`] when the archive cannot be unpacked.
pub fn explicit_data(d: PathBuf) -> Result<PathBuf, LocateError> {
    if is_archive(&d) {
        return unpack_archive(&d);
    }
    // Tar shards (`train-{0000..0127}.tar`): the modality expands the pattern and says which
    // shard is missing.
    if d.extension().is_some_and(|e| e == "tar") {
        return Ok(d);
    }
    if !d.exists() {
        return Err(LocateError::NotFound(format!(
            "--data {}: no such file or folder",
            d.display()
        )));
    }
    if !d.is_dir() {
        return Err(LocateError::NotFound(format!(
            "--data {}: not a folder (or a .tar.gz archive)",
            d.display()
        )));
    }
    Ok(d)
}

/// Whether the data `p` names is there: an existing folder or file, or tar shards
/// (`dir/train-{0000..0127}.tar`, a name ending in `.tar`) in an existing folder (the modality
/// names a missing shard when it reads them).
pub fn data_present(p: &Path) -> bool {
    p.exists()
        || (p.extension().is_some_and(|e| e == "tar")
            && p.parent()
                .is_some_and(|d| d.as_os_str().is_empty() || d.is_dir()))
}

/// Whether `p` is an existing `.tar.gz` or `.tgz` file.
pub fn is_archive(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    p.is_file() && (name.ends_with(".tar.gz") || name.ends_with(".tgz"))
}

/// Unpacks a dataset archive into `<cache>/unpacked/<name>-<size>` once (a folder already
/// there is reused) and returns that folder. The archive is unpacked into a temporary folder
/// beside it and then renamed, so an interrupted unpack never leaves a half-filled dataset.
///
/// # Errors
/// [`LocateError::Io`] naming the archive or the cache folder.
pub fn unpack_archive(archive: &Path) -> Result<PathBuf, LocateError> {
    let io = |context: String| move |source| LocateError::Io { context, source };
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = name.trim_end_matches(".tar.gz").trim_end_matches(".tgz");
    let size = std::fs::metadata(archive)
        .map_err(io(format!("--data {}", archive.display())))?
        .len();
    let dest = cache_dir().join("unpacked").join(format!("{stem}-{size}"));
    if dest.is_dir() {
        return Ok(dest);
    }
    eprintln!(
        "unpacking {} into {} (once)",
        archive.display(),
        dest.display()
    );
    let parent = dest.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent).map_err(io(parent.display().to_string()))?;
    let staging = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(parent)
        .map_err(io(parent.display().to_string()))?;
    let file = std::fs::File::open(archive).map_err(io(format!("--data {}", archive.display())))?;
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(staging.path())
        .map_err(io(format!("--data {}: cannot unpack", archive.display())))?;
    std::fs::rename(staging.keep(), &dest).map_err(io(dest.display().to_string()))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_plain_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = explicit_data(dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("nope: no such file or folder"), "{e}");
        let f = dir.path().join("f.txt");
        std::fs::write(&f, "x").unwrap();
        let e = explicit_data(f.clone()).unwrap_err().to_string();
        assert!(e.contains("not a folder"), "{e}");
        assert_eq!(resolve_local(Some(f.clone()), "d", true).unwrap(), f);
        assert_eq!(explicit_data(dir.path().to_path_buf()).unwrap(), dir.path());
    }
}
