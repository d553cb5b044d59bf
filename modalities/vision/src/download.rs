//! Download of the official CIFAR-10 binary archive (Krizhevsky 2009), with a progress bar, an
//! MD5 check, and extraction into a cache folder.

use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The official CIFAR-10 binary archive.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// Its published MD5.
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The HTTP request failed (offline, refused, not found).
    #[error(
        "cannot download {url}: {reason}. If this machine is offline, fetch the archive elsewhere, unpack it, and pass its folder with --data DIR (or set SSL_DATA_DIR)"
    )]
    Http {
        /// The address.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The file arrived but its checksum is wrong.
    #[error(
        "{url}: MD5 {got} does not match the expected {expected}; the download is corrupt or not the official archive (deleted)"
    )]
    Checksum {
        /// The address.
        url: String,
        /// The computed digest.
        got: String,
        /// The expected digest.
        expected: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads `url` into `dest` (a folder, created if needed), checks its MD5 against `md5`, and
/// unpacks the `.tar.gz` there. Returns `dest`. Nothing is left behind on failure.
///
/// # Errors
/// [`DownloadError`] saying what failed and, when offline, what to do instead.
pub fn download_and_extract(
    url: &str,
    md5: &str,
    dest: &Path,
    progress: bool,
) -> Result<PathBuf, DownloadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DownloadError::Io { path, source }
    };
    fs::create_dir_all(dest).map_err(io(dest))?;
    let http = |reason: String| DownloadError::Http {
        url: url.to_string(),
        reason,
    };
    let mut response = ureq::get(url).call().map_err(|e| http(e.to_string()))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bar = if progress {
        total
            .map(ProgressBar::new)
            .unwrap_or_else(ProgressBar::no_length)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "downloading {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
    let archive = dest.join(".download.tar.gz.part");
    let mut file = fs::File::create(&archive).map_err(io(&archive))?;
    let mut hasher = Md5::new();
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&archive);
                return Err(http(e.to_string()));
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(io(&archive))?;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(io(&archive))?;
    drop(file);
    bar.finish_and_clear();
    let got = hex(&hasher.finalize());
    if !got.eq_ignore_ascii_case(md5) {
        let _ = fs::remove_file(&archive);
        return Err(DownloadError::Checksum {
            url: url.to_string(),
            got,
            expected: md5.to_string(),
        });
    }
    let staging = dest.join(".extracting");
    let _ = fs::remove_dir_all(&staging);
    let unpack = (|| {
        let f = fs::File::open(&archive)?;
        tar::Archive::new(GzDecoder::new(f)).unpack(&staging)?;
        for entry in fs::read_dir(&staging)? {
            let entry = entry?;
            let target = dest.join(entry.file_name());
            if target.exists() {
                if target.is_dir() {
                    fs::remove_dir_all(&target)?
                } else {
                    fs::remove_file(&target)?
                }
            }
            fs::rename(entry.path(), target)?;
        }
        fs::remove_dir_all(&staging)
    })();
    let _ = fs::remove_file(&archive);
    if let Err(e) = unpack {
        let _ = fs::remove_dir_all(&staging);
        return Err(DownloadError::Io {
            path: dest.to_path_buf(),
            source: e,
        });
    }
    Ok(dest.to_path_buf())
}
